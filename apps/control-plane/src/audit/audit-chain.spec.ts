import { randomBytes } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { recordMessage, recordMessageParts } from './audit-chain.js';
import type { AuditRecord } from './audit.repository.js';

describe('recordMessageParts', () => {
  it('before ‖ hex(prev) ‖ after is exactly recordMessage, whatever the fields hold', () => {
    const records: AuditRecord[] = [
      {
        at: new Date(),
        actorId: null,
        actorName: 'agent "x" \\ from ::1',
        action: 'cluster.enroll',
        method: 'GRPC',
        path: '/p?q="1"',
        target: 'naïve ☃ \u2028 \n',
        projectId: null,
        outcome: 'success',
        status: 200,
        requestId: null,
      },
      {
        at: new Date(0),
        actorId: 't',
        actorName: '',
        action: 'a',
        method: 'PUT',
        path: '',
        target: null,
        projectId: '00000000-0000-0000-0000-000000000000',
        outcome: 'denied',
        status: 403,
        requestId: 'r',
      },
    ];
    for (const r of records) {
      for (const seq of ['1', '9007199254740993']) {
        const prev = randomBytes(32);
        const { before, after } = recordMessageParts(seq, r);
        expect(Buffer.concat([before, Buffer.from(prev.toString('hex')), after]).equals(recordMessage(seq, prev, r))).toBe(true);
      }
    }
  });
});
