// The Sigil console: a single-page app over the REST API, served at /console/ by the control plane.
import '@blueprintjs/core/lib/css/blueprint.css';
import '@blueprintjs/icons/lib/css/blueprint-icons.css';
import './console.css';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { RouterProvider, createBrowserRouter } from 'react-router';
import { ApiError } from './api/client';
import { SessionProvider } from './api/session';
import { Shell } from './ui/shell';
import { ProjectsPage } from './pages/projects';
import { ProjectPage } from './pages/project';
import { AppPage } from './pages/app';
import { ClustersPage } from './pages/clusters';
import { AuditPage } from './pages/audit';
import { AdminPage } from './pages/admin';
import { NotFound } from './pages/not-found';

const queries = new QueryClient({
  defaultOptions: {
    queries: {
      staleTime: 5_000,
      // A refusal will not change on retry; a network blip might.
      retry: (count, err) => !(err instanceof ApiError && err.status >= 400 && err.status < 500) && count < 2,
      refetchOnWindowFocus: false,
    },
  },
});

const router = createBrowserRouter(
  [
    {
      path: '/',
      element: <Shell />,
      children: [
        { index: true, element: <ProjectsPage /> },
        { path: 'projects/:project', element: <ProjectPage /> },
        { path: 'projects/:project/apps/:app', element: <AppPage /> },
        { path: 'projects/:project/apps/:app/:tab', element: <AppPage /> },
        { path: 'clusters', element: <ClustersPage /> },
        { path: 'audit', element: <AuditPage /> },
        { path: 'admin', element: <AdminPage /> },
        { path: '*', element: <NotFound /> },
      ],
    },
  ],
  { basename: '/console' },
);

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <QueryClientProvider client={queries}>
      <SessionProvider>
        <RouterProvider router={router} />
      </SessionProvider>
    </QueryClientProvider>
  </StrictMode>,
);
