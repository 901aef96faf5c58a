// Who is signed in, and what they may do. The console shows only the controls the role allows;
// the server refuses anyway (the same permissions, ROLE_PERMISSIONS in the control plane).
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { api, call, onSessionEnded, setCsrfToken, type Schemas } from './client';

type SessionView = Schemas['ConsoleSessionView'];

/** Not a secret and not trusted by the server: see SIGNED_IN_COOKIE in the control plane's console-cookie.ts. */
const SIGNED_IN_COOKIE = '__Host-sigil_signed_in';
/**
 * The server sets this hint beside the HttpOnly session cookie and clears both together: without
 * it there is no session to ask about (and no 401 for the browser to log on a first visit).
 */
const mayBeSignedIn = () => document.cookie.split('; ').includes(`${SIGNED_IN_COOKIE}=1`);
type Permission = string;

interface SessionState {
  /** undefined while the first probe runs; null when signed out */
  session: SessionView | null | undefined;
  signIn: (token: string) => Promise<void>;
  signOut: () => Promise<void>;
  can: (permission: Permission) => boolean;
}

const SessionContext = createContext<SessionState | null>(null);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [session, setSession] = useState<SessionView | null | undefined>(() => (mayBeSignedIn() ? undefined : null));
  const queries = useQueryClient();

  const adopt = useCallback(
    (s: SessionView | null) => {
      setCsrfToken(s?.csrfToken ?? null);
      if (!s) queries.clear();
      setSession(s);
    },
    [queries],
  );

  useEffect(() => {
    onSessionEnded(() => adopt(null));
    if (!mayBeSignedIn()) return;
    call(api.GET('/api/v1/console/session'))
      .then((s) => adopt(s))
      // 401: not signed in. Anything else (the control plane unreachable) also lands on the
      // sign-in page, which says so when the sign-in itself fails.
      .catch(() => adopt(null));
  }, [adopt]);

  const value = useMemo<SessionState>(
    () => ({
      session,
      async signIn(token) {
        adopt(await call(api.POST('/api/v1/console/session', { body: { token } })));
      },
      async signOut() {
        try {
          await call(api.DELETE('/api/v1/console/session'));
        } finally {
          adopt(null);
        }
      },
      can: (p) => session?.actor.permissions.includes(p) ?? false,
    }),
    [session, adopt],
  );
  return <SessionContext value={value}>{children}</SessionContext>;
}

export function useSession(): SessionState {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSession outside SessionProvider');
  return s;
}
