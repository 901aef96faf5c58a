import { InvalidArgumentError } from 'commander';

/** Repeatable flags. */
export const collect = (v: string, prev: string[] = []) => [...prev, v];

export const positiveInt = (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError('must be a positive whole number');
  return Number(v);
};

/** `a,b,c` → names. */
export const names = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
