// The frame around every page: navigation, who is signed in, sign-out; the sign-in page when
// there is no session.
import { Alignment, Button, Navbar, NavbarDivider, NavbarGroup, NavbarHeading, Tag } from '@blueprintjs/core';
import { useEffect, useRef } from 'react';
import { NavLink, Outlet, useLocation } from 'react-router';
import { useSession } from '../api/session';
import { SignInPage } from '../pages/sign-in';
import { Loading } from './feedback';

function NavItem({ to, children }: { to: string; children: string }) {
  return (
    <NavLink to={to} end={to === '/'} className={({ isActive }) => `bp6-button bp6-minimal${isActive ? ' bp6-active' : ''}`}>
      {children}
    </NavLink>
  );
}

export function Shell() {
  const { session, signOut, can } = useSession();
  const main = useRef<HTMLElement>(null);
  const location = useLocation();
  // After a navigation, focus moves to the page (keyboard and screen-reader users start there).
  useEffect(() => main.current?.focus({ preventScroll: true }), [location.pathname]);

  if (session === undefined) return <Loading what="the console" />;
  if (session === null) return <SignInPage />;
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <Navbar className="console-nav">
        <NavbarGroup align={Alignment.START}>
          <NavbarHeading>Sigil</NavbarHeading>
          <NavbarDivider />
          <nav aria-label="Main" className="console-nav-links">
            <NavItem to="/">Projects</NavItem>
            <NavItem to="/clusters">Clusters</NavItem>
            {can('audit:read') && <NavItem to="/audit">Audit</NavItem>}
            {can('tokens:manage') && <NavItem to="/admin">Administration</NavItem>}
          </nav>
        </NavbarGroup>
        <NavbarGroup align={Alignment.END}>
          <span className="console-actor">
            {session.actor.name} <Tag minimal>{session.actor.role}</Tag>
          </span>
          <Button variant="minimal" icon="log-out" text="Sign out" onClick={() => void signOut()} />
        </NavbarGroup>
      </Navbar>
      <main id="main" ref={main} tabIndex={-1} className="console-main">
        <Outlet />
      </main>
    </>
  );
}
