import { featureError, type ErrorKinds } from '../common/sigil-error.js';

/** Codes of API-token authentication and authorisation. */
export enum AuthErrorCode {
  Unauthenticated = 'unauthenticated',
  RateLimited = 'rate_limited',
  Forbidden = 'forbidden',
  AdminTokenScoped = 'admin_token_scoped',
  TokenNotFound = 'token_not_found',
  /** A change made with the console session cookie without the session's CSRF token. */
  CsrfFailed = 'csrf_failed',
}

export const AUTH_ERROR_KINDS: ErrorKinds<AuthErrorCode> = {
  [AuthErrorCode.Unauthenticated]: 'unauthenticated',
  [AuthErrorCode.RateLimited]: 'rate_limited',
  [AuthErrorCode.Forbidden]: 'forbidden',
  [AuthErrorCode.AdminTokenScoped]: 'invalid',
  [AuthErrorCode.TokenNotFound]: 'not_found',
  [AuthErrorCode.CsrfFailed]: 'forbidden',
};

export class AuthError extends featureError(AUTH_ERROR_KINDS) {}
