import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional, ApiResponse } from '@nestjs/swagger';

export class ProblemFieldView {
  @ApiProperty({ example: 'name' }) field!: string;
  @ApiProperty({ example: "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit" })
  problem!: string;
}

/** RFC 9457 problem details, as every error response is shaped (Content-Type: application/problem+json). */
export class ProblemView {
  @ApiProperty({ example: 'about:blank' }) type!: string;
  @ApiProperty({ example: 'bad request' }) title!: string;
  @ApiProperty({ example: 400 }) status!: number;
  @ApiProperty({ example: 'validation_failed', description: 'stable, machine-readable' }) code!: string;
  @ApiPropertyOptional({ example: 'unreachable', description: 'a finer machine-readable cause under code, where one is defined' })
  reason?: string;
  @ApiPropertyOptional({ example: 'name: must be a DNS-1123 label' }) detail?: string;
  @ApiPropertyOptional({ type: [ProblemFieldView] }) errors?: ProblemFieldView[];
  @ApiPropertyOptional({ example: '/api/v1/projects' }) instance?: string;
  @ApiPropertyOptional({ example: '1b0496ca-28f3-41c2-95a4-ffb004f715dc' }) requestId?: string;
}

const problem = (status: number, description: string) =>
  ApiResponse({ status, description, content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/ProblemView' } } } });

/** The error responses every authenticated API route can give. */
export const ApiProblems = () =>
  applyDecorators(
    problem(400, 'invalid input (validation_failed, invalid_secret, malformed_json, …)'),
    problem(401, 'missing, unknown or revoked API token'),
    problem(403, "the token's role may not do this"),
    problem(404, 'not found, or not visible to this token'),
    problem(409, 'conflict (already exists, not empty, …)'),
    problem(412, 'If-Match does not match the current ETag'),
    problem(413, 'body or secret too large'),
    problem(415, 'request body is not application/json'),
    problem(429, 'rate limited, or too many waiting requests (see Retry-After)'),
    problem(503, 'the database (busy) or the HSM (hsm_unavailable) is busy or away; retry after Retry-After'),
  );

/** A route that talks to a system for the caller (a registered database): 502 when that system fails. */
export const ApiUpstreamProblem = (description: string) => problem(502, description);
