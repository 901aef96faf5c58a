import { Link } from 'react-router';
import { Empty } from '../ui/feedback';

export function NotFound() {
  return (
    <Empty icon="search" title="Nothing here">
      This page does not exist. <Link to="/">Back to projects</Link>
    </Empty>
  );
}
