// Publishing by cluster names and/or labels, with a preview of the clusters it would reach
// (POST …/publish/preview, the same resolution publish uses) before confirming.
import { Callout, FormGroup, InputGroup, Tag } from '@blueprintjs/core';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useDeferredValue, useState } from 'react';
import { api, call, describeError, type Schemas } from '../api/client';
import { notify } from '../ui/feedback';
import { FormDialog } from '../ui/forms';
import { publishBody } from './publish-body';

export function PublishDialog({ project, app, isOpen, onClose }: { project: string; app: string; isOpen: boolean; onClose: () => void }) {
  const [names, setNames] = useState('');
  const [labels, setLabels] = useState('');
  const queries = useQueryClient();
  const body = publishBody(useDeferredValue(names), useDeferredValue(labels));
  const path = { project, app };
  const preview = useQuery({
    queryKey: ['publish-preview', project, app, body],
    queryFn: () =>
      call(api.POST('/api/v1/projects/{project}/apps/{app}/publish/preview', { params: { path }, body: body as Schemas['PublishDto'] })),
    enabled: isOpen && !('error' in body),
    staleTime: 0,
  });
  return (
    <FormDialog
      title={`Publish ${app}`}
      icon="send-to-graph"
      isOpen={isOpen}
      onClose={onClose}
      submitText={preview.data ? `Publish to ${preview.data.count} cluster${preview.data.count === 1 ? '' : 's'}` : 'Publish'}
      onSubmit={async () => {
        const final = publishBody(names, labels);
        if ('error' in final) throw new Error(final.error);
        await call(api.POST('/api/v1/projects/{project}/apps/{app}/publish', { params: { path }, body: final }));
        notify(`${app} published`);
        await Promise.all([
          queries.invalidateQueries({ queryKey: ['deliveries', project, app] }),
          queries.invalidateQueries({ queryKey: ['placement', project, app] }),
        ]);
      }}
    >
      <FormGroup label="Clusters by name" labelFor="publish-names" helperText="Separated by commas or spaces.">
        <InputGroup id="publish-names" value={names} onValueChange={setNames} autoFocus />
      </FormGroup>
      <FormGroup
        label="And/or every cluster with these labels"
        labelFor="publish-labels"
        helperText="key=value pairs, comma-separated; clusters that get these labels later receive the app too."
      >
        <InputGroup id="publish-labels" placeholder="tier=store,region=eu-west" value={labels} onValueChange={setLabels} />
      </FormGroup>
      <div aria-live="polite" data-testid="publish-preview">
        {'error' in body ? (
          <Callout icon="info-sign">{body.error}.</Callout>
        ) : preview.isError ? (
          <Callout intent="danger">{describeError(preview.error)}</Callout>
        ) : preview.data ? (
          <Callout
            intent={preview.data.count ? 'primary' : 'warning'}
            icon="eye-open"
            title={`Would reach ${preview.data.count} cluster(s)`}
          >
            <div className="label-tags">
              {preview.data.clusters.map((c) => (
                <Tag key={c} minimal>
                  {c}
                </Tag>
              ))}
              {preview.data.count > preview.data.clusters.length && (
                <span>and {preview.data.count - preview.data.clusters.length} more</span>
              )}
            </div>
            {preview.data.unknown.length > 0 && <p>Unknown cluster names: {preview.data.unknown.join(', ')}</p>}
            {preview.data.notAllowed > 0 && (
              <p>{preview.data.notAllowed} matching cluster(s) are outside what this project may publish to.</p>
            )}
          </Callout>
        ) : (
          <Callout icon="eye-open">Working out which clusters this reaches…</Callout>
        )}
      </div>
    </FormDialog>
  );
}

export function UnpublishDialog({ project, app, isOpen, onClose }: { project: string; app: string; isOpen: boolean; onClose: () => void }) {
  const [names, setNames] = useState('');
  const queries = useQueryClient();
  return (
    <FormDialog
      title={`Unpublish ${app}`}
      icon="disable"
      isOpen={isOpen}
      onClose={onClose}
      submitText="Unpublish"
      onSubmit={async () => {
        const clusters = names.split(/[\s,]+/).filter(Boolean);
        await call(
          api.POST('/api/v1/projects/{project}/apps/{app}/unpublish', {
            params: { path: { project, app } },
            body: clusters.length ? { clusters } : {},
          }),
        );
        notify(`${app} unpublished${clusters.length ? ` from ${clusters.join(', ')}` : ''}`);
        await Promise.all([
          queries.invalidateQueries({ queryKey: ['deliveries', project, app] }),
          queries.invalidateQueries({ queryKey: ['placement', project, app] }),
        ]);
      }}
    >
      <FormGroup
        label="Only from these clusters"
        labelFor="unpublish-names"
        helperText="Empty: from every cluster. Agents delete the app's Secret."
      >
        <InputGroup id="unpublish-names" value={names} onValueChange={setNames} autoFocus />
      </FormGroup>
    </FormDialog>
  );
}
