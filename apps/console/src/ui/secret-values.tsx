// The key/value editor for secret values. Values are write-only: typed into password fields (or
// read from files), kept only in those fields (never in React state, so never mirrored into a
// `value` attribute), read once at submit and wiped from the fields right after.
import { Button, FileInput, InputGroup, SegmentedControl } from '@blueprintjs/core';
import { useImperativeHandle, useRef, useState, type Ref } from 'react';

export interface SecretValuesHandle {
  /** The entered values as the API's `data` (text) and `binaryData` (files, base64). */
  read: () => Promise<{ data: Record<string, string>; binaryData: Record<string, string> }>;
  /** Empties every value field (after submit or cancel). */
  wipe: () => void;
}

interface Row {
  id: number;
  key: string;
  source: 'text' | 'file';
  fileName?: string;
}

let nextRow = 1;

function base64(bytes: ArrayBuffer): string {
  let s = '';
  const view = new Uint8Array(bytes);
  for (let i = 0; i < view.length; i += 0x8000) s += String.fromCharCode(...view.subarray(i, i + 0x8000));
  return btoa(s);
}

export function SecretValues({ keys, handle }: { keys?: string[]; handle: Ref<SecretValuesHandle> }) {
  const [rows, setRows] = useState<Row[]>(() =>
    (keys?.length ? keys : ['']).map((key) => ({ id: nextRow++, key, source: 'text' as const })),
  );
  const inputs = useRef(new Map<number, HTMLInputElement>());
  const files = useRef(new Map<number, File>());

  useImperativeHandle(handle, () => ({
    async read() {
      const data: Record<string, string> = {};
      const binaryData: Record<string, string> = {};
      for (const row of rows) {
        const key = row.key.trim();
        if (row.source === 'file') {
          const file = files.current.get(row.id);
          if (file) binaryData[key] = base64(await file.arrayBuffer());
        } else data[key] = inputs.current.get(row.id)?.value ?? '';
      }
      return { data, binaryData };
    },
    wipe() {
      for (const input of inputs.current.values()) input.value = '';
      files.current.clear();
      setRows((r) => r.map((row) => ({ ...row, fileName: undefined })));
    },
  }));

  const fixedKeys = Boolean(keys?.length);
  return (
    <fieldset className="secret-values">
      <legend>Values</legend>
      {rows.map((row, i) => (
        <div className="kv-row" key={row.id}>
          <InputGroup
            aria-label={`Key ${i + 1}`}
            placeholder="KEY"
            value={row.key}
            readOnly={fixedKeys}
            onValueChange={(v) => setRows(rows.map((r) => (r.id === row.id ? { ...r, key: v } : r)))}
          />
          {row.source === 'text' ? (
            <input
              className="bp6-input"
              type="password"
              aria-label={`Value of ${row.key || `key ${i + 1}`}`}
              placeholder="value (hidden)"
              autoComplete="off"
              spellCheck={false}
              ref={(el) => {
                if (el) inputs.current.set(row.id, el);
                else inputs.current.delete(row.id);
              }}
            />
          ) : (
            <FileInput
              text={row.fileName ?? 'Choose a file…'}
              inputProps={{ 'aria-label': `File for ${row.key || `key ${i + 1}`}` }}
              onInputChange={(e) => {
                const file = e.currentTarget.files?.[0];
                if (!file) return;
                files.current.set(row.id, file);
                setRows(rows.map((r) => (r.id === row.id ? { ...r, fileName: file.name } : r)));
              }}
            />
          )}
          <span>
            <SegmentedControl
              small
              aria-label={`Source of ${row.key || `key ${i + 1}`}`}
              options={[
                { label: 'Text', value: 'text' },
                { label: 'File', value: 'file' },
              ]}
              value={row.source}
              onValueChange={(v) => setRows(rows.map((r) => (r.id === row.id ? { ...r, source: v as Row['source'] } : r)))}
            />
            {!fixedKeys && rows.length > 1 && (
              <Button
                variant="minimal"
                icon="cross"
                aria-label={`Remove ${row.key || `key ${i + 1}`}`}
                onClick={() => setRows(rows.filter((r) => r.id !== row.id))}
              />
            )}
          </span>
        </div>
      ))}
      {!fixedKeys && (
        <Button
          icon="add"
          text="Add key"
          variant="minimal"
          onClick={() => setRows([...rows, { id: nextRow++, key: '', source: 'text' }])}
        />
      )}
    </fieldset>
  );
}
