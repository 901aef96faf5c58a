import { ApiProperty } from '@nestjs/swagger';
import { LEASE_STATES } from './lease.entity.js';

export class LeaseView {
  @ApiProperty() id!: string;
  @ApiProperty({ example: 'payments' }) project!: string;
  @ApiProperty({ example: 'checkout' }) app!: string;
  @ApiProperty({ type: String, nullable: true, example: 'orders-db', description: 'null once the secret was deleted' }) secret!:
    string | null;
  @ApiProperty({ type: String, nullable: true, example: 'eu-west-1', description: 'null once the cluster was deleted' }) cluster!:
    string | null;
  @ApiProperty({ example: 3, description: "this cluster's version of the secret (what its agent reports applied)" }) serial!: number;
  @ApiProperty({ example: 'sigil_1a2b3c4d_5e6f708192a3b4c5d6e7', description: 'the role in the target database' }) role!: string;
  @ApiProperty({
    enum: LEASE_STATES,
    description:
      'intent: being issued; active: delivered; superseded: replaced, revoked after the grace period; revoking; revoked; failed: issuing failed (see lastError; retried)',
  })
  state!: string;
  @ApiProperty({ type: Date, nullable: true }) issuedAt!: Date | null;
  @ApiProperty() expiresAt!: Date;
  @ApiProperty({ description: 'when a successor is issued' }) renewAt!: Date;
  @ApiProperty({ type: Date, nullable: true, description: 'superseded: revoked from then on' }) revokeAfter!: Date | null;
  @ApiProperty({ type: Date, nullable: true }) revokedAt!: Date | null;
  @ApiProperty({
    type: String,
    nullable: true,
    example: 'superseded',
    description:
      'superseded, expired, not_desired (unpublished, cluster disabled or deleted, secret deleted), manual, interrupted (an issue that never finished)',
  })
  revokeReason!: string | null;
  @ApiProperty({ example: 0, description: 'failed attempts in a row' }) attempts!: number;
  @ApiProperty({
    type: String,
    nullable: true,
    example: 'unreachable: connect ECONNREFUSED',
    description: "the engine's error code and message (never a password)",
  })
  lastError!: string | null;
  @ApiProperty() createdAt!: Date;
}

export class LeasePage {
  @ApiProperty({ type: [LeaseView] }) items!: LeaseView[];
  @ApiProperty({ nullable: true, type: String }) next!: string | null;
}
