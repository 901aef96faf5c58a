import type { DesiredSecret } from '@sigil/agent-protocol';

/** `sigil.dev/source`: the one (project, app, secret) a Kubernetes Secret belongs to. */
export const sourceOf = (s: Pick<DesiredSecret, 'projectId' | 'app' | 'secret'>) => `${s.projectId}/${s.app}/${s.secret}`;

export const targetKey = (namespace: string, name: string) => `${namespace}/${name}`;

/** The desired entries by target `namespace/name`, in the order received. */
export function byTarget(secrets: Iterable<DesiredSecret>): Map<string, DesiredSecret[]> {
  const groups = new Map<string, DesiredSecret[]>();
  for (const s of secrets) {
    const k = targetKey(s.target!.namespace, s.target!.name);
    const group = groups.get(k);
    if (group) group.push(s);
    else groups.set(k, [s]);
  }
  return groups;
}

/**
 * Several desired entries for one target (the control plane must never send that): none may
 * silently win by arriving last. The one entry whose source already owns the Secret keeps it;
 * every other entry is refused, and all of them are when the Secret is absent, unowned, or owned
 * by a source that is not exactly one of them.
 */
export function resolveContested(
  entries: DesiredSecret[],
  currentOwner: string | undefined,
): { kept: DesiredSecret | undefined; refused: DesiredSecret[] } {
  const owners = currentOwner === undefined ? [] : entries.filter((e) => sourceOf(e) === currentOwner);
  const kept = owners.length === 1 ? owners[0] : undefined;
  return { kept, refused: entries.filter((e) => e !== kept) };
}
