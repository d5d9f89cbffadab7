// Metrics (/metrics, /jmx) and the dashboard on the admin port, read from
// the workgroups' shared stats blocks. (Filled in by the observability work.)
import type { AdminServer } from './admin';
import type { Config } from './config';
import type { Supervisor } from './supervisor';

export function registerObservability(_admin: AdminServer, _supervisor: Supervisor, _config: Config): void {}
