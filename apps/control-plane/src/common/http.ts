import type { Response } from 'express';
import { CommonError, CommonErrorCode } from './common.errors.js';
import { labelKeyProblem, labelValueProblem } from './kubernetes-names.js';

/** Strong ETag from a row version. */
export function setEtag(res: Response, version: number): void {
  res.setHeader('ETag', `"${version}"`);
}

/** The version an If-Match header demands (undefined: no precondition). */
export function ifMatchVersion(header: string | undefined): number | undefined {
  if (header === undefined || header.trim() === '*') return undefined;
  const m = /^\s*(?:W\/)?"(\d{1,10})"\s*$/.exec(header);
  if (!m) throw new CommonError(CommonErrorCode.PreconditionFailed, 'If-Match must be an ETag returned by this API, e.g. "3"');
  return Number(m[1]);
}

export function checkVersion(expected: number | undefined, actual: number): void {
  if (expected !== undefined && expected !== actual) {
    throw new CommonError(CommonErrorCode.PreconditionFailed, `the resource changed (now version ${actual}); fetch it again`);
  }
}

export interface Page<T> {
  items: T[];
  /** Pass as `after` to get the next page; null on the last page. */
  next: string | null;
}

export const DEFAULT_PAGE = 50;
export const MAX_PAGE = 500;

/** `after` cursors are names (DNS-1123); anything else cannot match and is refused up front. */
export function afterCursor(after: unknown): string | undefined {
  if (after === undefined) return undefined;
  if (typeof after !== 'string' || !/^[a-z0-9.-]{1,253}$/.test(after))
    throw new CommonError(CommonErrorCode.InvalidCursor, 'after must be the `next` value of a previous page');
  return after;
}

export function pageLimit(limit: string | undefined, fallback = DEFAULT_PAGE): number {
  if (limit === undefined) return fallback;
  if (typeof limit !== 'string' || !/^\d{1,4}$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_PAGE) {
    throw new CommonError(CommonErrorCode.InvalidLimit, `limit must be an integer between 1 and ${MAX_PAGE}`);
  }
  return Number(limit);
}

/** Builds a page from `limit + 1` rows fetched in order. */
export function toPage<T>(rows: T[], limit: number, cursor: (t: T) => string): Page<T> {
  const items = rows.slice(0, limit);
  return { items, next: rows.length > limit ? cursor(items[items.length - 1]!) : null };
}

/** `?labels=region=eu,tier=store` → an equality selector (matchLabels); undefined when absent or empty. */
export function parseLabelFilter(raw: string | undefined): Record<string, string> | undefined {
  if (raw === undefined || raw === '') return undefined;
  const out: Record<string, string> = {};
  for (const part of String(raw).split(',')) {
    const [k, v, ...rest] = part.split('=');
    if (k === undefined || v === undefined || rest.length > 0 || labelKeyProblem(k) || labelValueProblem(v)) {
      throw new CommonError(CommonErrorCode.InvalidLabelFilter, 'labels must look like key=value,key2=value2');
    }
    out[k] = v;
  }
  return out;
}
