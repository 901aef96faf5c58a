import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { AGENT_ENTRY, AGENT_NODE_FLAGS } from './runtime-flags.js';

describe('AGENT_NODE_FLAGS', () => {
  it('is what the container runs, in an ENTRYPOINT that pod args extend rather than replace', () => {
    const dockerfile = readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8');
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
    expect(JSON.parse(entrypoint ?? 'null')).toEqual(['/nodejs/bin/node', ...AGENT_NODE_FLAGS, AGENT_ENTRY]);
    expect(dockerfile).not.toMatch(/^CMD /m);
  });
});
