import { execFileSync } from 'node:child_process';
import { testEnv, testHsmPin } from './test-env.js';

export interface ListedObject {
  kind: string;
  label: string;
  usage: string[];
  access: string[];
}

/** `pkcs11-tool --login --list-objects` (OpenSC) on the harness token, parsed. */
export function listTokenObjects(): ListedObject[] {
  const { module, tokenLabel, conf } = testEnv().hsm;
  const out = execFileSync(
    'pkcs11-tool',
    ['--module', module, '--token-label', tokenLabel, '--login', '--pin', testHsmPin(), '--list-objects'],
    {
      env: { ...process.env, SOFTHSM2_CONF: conf },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  const objects: ListedObject[] = [];
  for (const block of out.split(/\n(?=\S)/)) {
    const kind = block.split('\n')[0]!.trim();
    if (!kind) continue;
    const field = (name: string) => new RegExp(`^\\s+${name}:\\s+(.*)$`, 'm').exec(block)?.[1]?.trim() ?? '';
    const list = (name: string) =>
      field(name)
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    objects.push({ kind, label: field('label'), usage: list('Usage'), access: list('Access') });
  }
  return objects;
}
