// How the console says "loading", "nothing here yet" and "that failed", the same way everywhere.
import { Callout, NonIdealState, OverlayToaster, Spinner, type IconName, type Toaster } from '@blueprintjs/core';
import type { JSX, ReactNode } from 'react';
import { describeError } from '../api/client';

export function Loading({ what }: { what: string }) {
  return <NonIdealState icon={<Spinner size={24} aria-label={`Loading ${what}`} />} description={`Loading ${what}…`} />;
}

export function Failed({ error, title = 'Something went wrong' }: { error: unknown; title?: string }) {
  return (
    <Callout intent="danger" title={title} role="alert">
      {describeError(error)}
    </Callout>
  );
}

export function Empty({ icon, title, children, action }: { icon: IconName; title: string; children?: ReactNode; action?: ReactNode }) {
  return <NonIdealState icon={icon} title={title} description={children} action={action as JSX.Element | undefined} />;
}

let toaster: Promise<Toaster> | undefined;
/** A short notice in the corner: "Secret rotated", "Token revoked". */
export function notify(message: string, intent: 'success' | 'danger' | 'primary' = 'success'): void {
  toaster ??= OverlayToaster.create({ position: 'top', maxToasts: 2 });
  void toaster.then((t) => t.show({ message, intent, timeout: intent === 'danger' ? 8000 : 3000 }));
}
