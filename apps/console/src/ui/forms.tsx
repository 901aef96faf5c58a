// Small pieces every form uses: a dialog with a submit button that shows the server's refusal
// in place, and a confirmation for anything destructive.
import { Alert, Button, Callout, Dialog, DialogBody, DialogFooter, type IconName } from '@blueprintjs/core';
import { useState, type FormEvent, type ReactNode } from 'react';
import { describeError } from '../api/client';

export function FormDialog({
  title,
  icon,
  isOpen,
  onClose,
  onSubmit,
  submitText,
  children,
  wide,
}: {
  title: string;
  icon?: IconName;
  isOpen: boolean;
  onClose: () => void;
  /** Throws to keep the dialog open and show the error. */
  onSubmit: () => Promise<void>;
  submitText: string;
  children: ReactNode;
  wide?: boolean;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await onSubmit();
      onClose();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  return (
    <Dialog title={title} icon={icon} isOpen={isOpen} onClose={onClose} className={wide ? 'wide-dialog' : undefined}>
      <form onSubmit={(e) => void submit(e)} noValidate>
        <DialogBody>
          {children}
          {error !== null && (
            <Callout intent="danger" role="alert">
              {describeError(error)}
            </Callout>
          )}
        </DialogBody>
        <DialogFooter
          actions={
            <>
              <Button text="Cancel" onClick={onClose} />
              <Button type="submit" intent="primary" text={submitText} loading={busy} />
            </>
          }
        />
      </form>
    </Dialog>
  );
}

/** A button that asks first ("Delete secret db? This cannot be undone."). */
export function ConfirmButton({
  text,
  icon,
  question,
  confirmText,
  onConfirm,
  intent = 'danger',
}: {
  text: string;
  icon?: IconName;
  question: ReactNode;
  confirmText: string;
  onConfirm: () => Promise<void>;
  intent?: 'danger' | 'warning' | 'primary';
}) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  return (
    <>
      <Button text={text} icon={icon} intent={intent} variant="minimal" onClick={() => setOpen(true)} />
      <Alert
        isOpen={open}
        intent={intent}
        icon={icon}
        confirmButtonText={confirmText}
        cancelButtonText="Cancel"
        loading={busy}
        onCancel={() => {
          setOpen(false);
          setError(null);
        }}
        onConfirm={() => {
          setBusy(true);
          onConfirm()
            .then(() => setOpen(false))
            .catch((err: unknown) => setError(err))
            .finally(() => setBusy(false));
        }}
      >
        <div>{question}</div>
        {error !== null && (
          <Callout intent="danger" role="alert">
            {describeError(error)}
          </Callout>
        )}
      </Alert>
    </>
  );
}
