// Sign in with an API token once: the server answers with an HttpOnly session cookie; the token
// leaves the page as soon as the request is sent (never stored by the browser).
import { Button, Callout, Card, FormGroup, H2, InputGroup } from '@blueprintjs/core';
import { useRef, useState, type FormEvent } from 'react';
import { describeError } from '../api/client';
import { useSession } from '../api/session';

export function SignInPage() {
  const { signIn } = useSession();
  const input = useRef<HTMLInputElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const field = input.current!;
    const token = field.value.trim();
    field.value = '';
    if (!token) {
      setError('Paste an API token (it starts with sgl_).');
      field.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await signIn(token);
    } catch (err) {
      setError(describeError(err));
      setBusy(false);
      field.focus();
    }
  }

  return (
    <main className="sign-in">
      <Card elevation={2}>
        <H2>Sign in to Sigil</H2>
        <p>
          Paste an API token. The console exchanges it for a session that ends when you sign out, after 30 minutes without use, or after 8
          hours; the token itself is not kept in this browser.
        </p>
        <form onSubmit={(e) => void submit(e)} noValidate>
          <FormGroup
            label="API token"
            labelFor="token"
            helperText="An admin creates tokens with `sigil tokens create` or under Administration."
          >
            <InputGroup id="token" name="token" type="password" autoComplete="off" spellCheck={false} inputRef={input} autoFocus large />
          </FormGroup>
          {error && (
            <Callout intent="danger" role="alert" className="sign-in-error">
              {error}
            </Callout>
          )}
          <Button type="submit" intent="primary" loading={busy} text="Sign in" large fill />
        </form>
      </Card>
    </main>
  );
}
