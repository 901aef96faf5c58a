import { describe, expect, it } from '@jest/globals';
import { publishBody } from '../pages/publish-body';
import { KeyValueError, keyValueText, parseKeyValues } from './key-values';

describe('parseKeyValues', () => {
  it('reads pairs split by newlines or commas, trimmed, the first = splitting, empty pairs skipped', () => {
    expect(parseKeyValues(' region = eu-west ,\n\ntier=store,,\nurl=a=b ')).toEqual({ region: 'eu-west', tier: 'store', url: 'a=b' });
    expect(parseKeyValues('')).toEqual({});
    expect(parseKeyValues('a=1,a=2')).toEqual({ a: '2' });
    expect(parseKeyValues('empty=')).toEqual({ empty: '' });
  });

  it('names the pair that is not key=value, in the shape the form asks for', () => {
    expect(() => parseKeyValues('a=1,oops')).toThrow(new KeyValueError('“oops” is not key=value'));
    expect(() => parseKeyValues('=value')).toThrow(KeyValueError);
    expect(() => parseKeyValues('URL=x,y\nNOPE', /\n+/, 'KEY=value')).toThrow('“NOPE” is not KEY=value');
  });

  it('with newlines alone as separators, keeps commas inside values (templates)', () => {
    expect(parseKeyValues('DSN=host={{host}},port={{port}}\nUSER={{username}}', /\n+/)).toEqual({
      DSN: 'host={{host}},port={{port}}',
      USER: '{{username}}',
    });
  });

  it('round-trips through keyValueText', () => {
    const labels = { region: 'eu-west', tier: 'store' };
    expect(keyValueText(labels)).toBe('region=eu-west\ntier=store');
    expect(parseKeyValues(keyValueText(labels))).toEqual(labels);
  });
});

describe('publishBody', () => {
  it('names, labels, or both', () => {
    expect(publishBody('eu-1, eu-2 eu-3', '')).toEqual({ clusters: ['eu-1', 'eu-2', 'eu-3'] });
    expect(publishBody('', 'tier=store, region=eu')).toEqual({ selector: { matchLabels: { tier: 'store', region: 'eu' } } });
    expect(publishBody('eu-1', 'tier=store')).toEqual({ clusters: ['eu-1'], selector: { matchLabels: { tier: 'store' } } });
  });

  it('an error to show, not a body, for nothing given or a bad label', () => {
    expect(publishBody(' ', ' ')).toEqual({ error: 'Name clusters or give labels to match' });
    expect(publishBody('eu-1', 'tier')).toEqual({ error: '“tier” is not key=value' });
  });
});
