// One app: its secrets, where it is delivered (the fleet view), the pod-spec snippet, and for
// injected and dynamic secrets who consumed what.
import { Breadcrumb, Button, H1, Tab, Tabs, Tag } from '@blueprintjs/core';
import { useQuery } from '@tanstack/react-query';
import { useState, type MouseEvent } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { api, call } from '../api/client';
import { useSession } from '../api/session';
import { Failed, Loading } from '../ui/feedback';
import { ConsumptionPanel, LeasesPanel, PodSpecPanel } from './app-extras';
import { FleetPanel } from './app-fleet';
import { PublishDialog, UnpublishDialog } from './app-publish';
import { SecretsPanel } from './app-secrets';
import { AppSettingsDialog, deliveryLabel } from './project';
import { ConfirmButton } from '../ui/forms';
import { notify } from '../ui/feedback';

const TABS = ['secrets', 'fleet', 'pod-spec', 'consumption', 'leases'] as const;

export function AppPage() {
  const { project = '', app = '', tab = 'secrets' } = useParams();
  const { can } = useSession();
  const navigate = useNavigate();
  const [dialog, setDialog] = useState<'publish' | 'unpublish' | 'settings' | null>(null);
  // Real links (open in a new tab works); a plain click stays in the app.
  const go = (e: MouseEvent, to: string) => {
    if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    void navigate(to);
  };
  const info = useQuery({
    queryKey: ['app', project, app],
    queryFn: () => call(api.GET('/api/v1/projects/{project}/apps/{app}', { params: { path: { project, app } } })),
  });
  if (info.isPending) return <Loading what="the app" />;
  if (info.isError) return <Failed error={info.error} title={`App ${app} could not be loaded`} />;
  const a = info.data;
  const selected = (TABS as readonly string[]).includes(tab) ? tab : 'secrets';
  return (
    <>
      {/* Blueprint's <Breadcrumbs> puts a spacer <div> inside its <ol> (invalid list markup): its items, in a list of our own. */}
      <nav aria-label="Breadcrumb">
        <ol className="bp6-breadcrumbs">
          <li>
            <Breadcrumb href="/console/" onClick={(e) => go(e, '/')} text="Projects" />
          </li>
          <li>
            <Breadcrumb href={`/console/projects/${project}`} onClick={(e) => go(e, `/projects/${project}`)} text={project} />
          </li>
          <li>
            <Breadcrumb current text={app} />
          </li>
        </ol>
      </nav>
      <div className="page-header">
        <div>
          <H1>{a.name}</H1>
          <span className="label-tags">
            <Tag minimal icon="cube">
              namespace {a.namespace}
            </Tag>
            <Tag minimal icon="import">
              {deliveryLabel(a)}
            </Tag>
            <Tag minimal>{a.secretType}</Tag>
          </span>
        </div>
        <div>
          {can('publications:write') && (
            <>
              <Button intent="primary" icon="send-to-graph" text="Publish" onClick={() => setDialog('publish')} />{' '}
              <Button icon="disable" text="Unpublish" onClick={() => setDialog('unpublish')} />{' '}
            </>
          )}
          {can('apps:write') && (
            <>
              <Button icon="cog" text="Settings" onClick={() => setDialog('settings')} />
              <ConfirmButton
                text="Delete app"
                icon="trash"
                confirmText="Delete app"
                question={`Delete ${a.name} with all its secrets? Unpublish it first: an app still published anywhere is refused.`}
                onConfirm={async () => {
                  await call(api.DELETE('/api/v1/projects/{project}/apps/{app}', { params: { path: { project, app } } }));
                  notify(`App ${a.name} deleted`);
                  void navigate(`/projects/${project}`);
                }}
              />
            </>
          )}
        </div>
      </div>
      <Tabs
        id="app-tabs"
        selectedTabId={selected}
        onChange={(t) => void navigate(`/projects/${project}/apps/${app}/${String(t)}`, { replace: true })}
        large
        renderActiveTabPanelOnly
      >
        <Tab id="secrets" title="Secrets" panel={<SecretsPanel project={project} app={app} />} />
        <Tab id="fleet" title="Fleet" panel={<FleetPanel project={project} app={app} />} />
        <Tab id="pod-spec" title="Pod spec" panel={<PodSpecPanel project={project} app={app} />} />
        {a.deliveryMode === 'inject' && (
          <Tab id="consumption" title="Consumption" panel={<ConsumptionPanel project={project} app={app} />} />
        )}
        <Tab id="leases" title="Leases" panel={<LeasesPanel project={project} app={app} />} />
      </Tabs>
      <PublishDialog project={project} app={app} isOpen={dialog === 'publish'} onClose={() => setDialog(null)} />
      <UnpublishDialog project={project} app={app} isOpen={dialog === 'unpublish'} onClose={() => setDialog(null)} />
      {dialog === 'settings' && <AppSettingsDialog project={project} app={a} onClose={() => setDialog(null)} />}
      <p className="bp6-text-muted">
        <Link to={`/projects/${project}`}>Back to {project}</Link>
      </p>
    </>
  );
}
