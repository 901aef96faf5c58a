import { Button, Card, FormGroup, H1, HTMLTable, InputGroup } from '@blueprintjs/core';
import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, call } from '../api/client';
import { usePaged } from '../api/paging';
import { useSession } from '../api/session';
import { Empty, Failed, Loading, notify } from '../ui/feedback';
import { FormDialog } from '../ui/forms';
import { ago } from '../ui/time';

export function ProjectsPage() {
  const { can } = useSession();
  const [creating, setCreating] = useState(false);
  const projects = usePaged(['projects'], (after) => call(api.GET('/api/v1/projects', { params: { query: { after, limit: '100' } } })));

  return (
    <>
      <div className="page-header">
        <H1>Projects</H1>
        {can('projects:write') && <Button intent="primary" icon="add" text="New project" onClick={() => setCreating(true)} />}
      </div>
      {projects.isPending ? (
        <Loading what="projects" />
      ) : projects.isError ? (
        <Failed error={projects.error} title="The projects could not be loaded" />
      ) : projects.items.length === 0 ? (
        <Empty icon="folder-new" title="No projects yet">
          A project groups the apps of one team and decides which clusters they may reach.{' '}
          {can('projects:write')
            ? 'Create the first one with “New project”.'
            : 'Ask an admin to create one and give your token access to it.'}
        </Empty>
      ) : (
        <Card className="table-card">
          <HTMLTable className="full-width" interactive striped>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Description</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {projects.items.map((p) => (
                <tr key={p.id}>
                  <td>
                    <Link to={`/projects/${p.name}`}>{p.name}</Link>
                  </td>
                  <td>{p.description || '—'}</td>
                  <td>{ago(p.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </HTMLTable>
          {projects.hasNextPage && (
            <Button text="Show more" onClick={() => void projects.fetchNextPage()} loading={projects.isFetchingNextPage} />
          )}
        </Card>
      )}
      <CreateProjectDialog isOpen={creating} onClose={() => setCreating(false)} />
    </>
  );
}

function CreateProjectDialog({ isOpen, onClose }: { isOpen: boolean; onClose: () => void }) {
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const queries = useQueryClient();
  const navigate = useNavigate();
  return (
    <FormDialog
      title="New project"
      icon="folder-new"
      isOpen={isOpen}
      onClose={onClose}
      submitText="Create project"
      onSubmit={async () => {
        const p = await call(api.POST('/api/v1/projects', { body: { name: name.trim(), description: description.trim() || undefined } }));
        await queries.invalidateQueries({ queryKey: ['projects'] });
        notify(`Project ${p.name} created`);
        void navigate(`/projects/${p.name}`);
      }}
    >
      <FormGroup label="Name" labelFor="project-name" helperText="Lower-case letters, digits and dashes (a DNS label).">
        <InputGroup id="project-name" value={name} onValueChange={setName} autoFocus required />
      </FormGroup>
      <FormGroup label="Description" labelFor="project-description" labelInfo="(optional)">
        <InputGroup id="project-description" value={description} onValueChange={setDescription} />
      </FormGroup>
    </FormDialog>
  );
}
