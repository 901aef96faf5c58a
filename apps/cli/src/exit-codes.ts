/** Documented exit codes (README, `sigil --help`): pipelines branch on them. */
export const EXIT = {
  ok: 0,
  /** publish/unpublish --wait: at least one cluster failed */
  failed: 1,
  /** bad flags or arguments, or the server refused the input (4xx) */
  usage: 2,
  /** the control plane could not be reached, is not ready, or answered 5xx / 429 */
  unavailable: 3,
  /** no token, or the token is unknown, revoked or lacks the permission */
  auth: 4,
  /** --wait ran out of --timeout before every cluster converged */
  timeout: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    /** The server's problem+json `code` when the error is its answer: what commands branch on. */
    readonly problemCode?: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
