// What the control plane observes, and the admin routes that show it.
//
// Figures come from two places, both read on the main thread without
// asking any workgroup anything: the workgroups' shared stats blocks
// (protocol/stats.ts; one writer each, plain loads here) and this process
// (memory, CPU, descriptors, native-io's arenas). /metrics (metrics.ts),
// /jmx (jmx.ts) and the dashboard (dashboard.ts, which polls /jmx) are
// views of the same snapshots, so a scrape costs the data plane nothing but
// the CPU the main thread spends on it.
import type { AdminServer } from './admin';
import type { Config } from './config';
import { registerDashboard } from './dashboard';
import { JmxView, JMX_WINDOW_SECONDS } from './jmx';
import { PromMetrics } from './metrics';
import { Figures } from './figures';
import type { Supervisor } from './supervisor';

/** Registers /metrics, /jmx, /dashboard and the dashboard's assets on the admin port. */
export function registerObservability(admin: AdminServer, supervisor: Supervisor, _config: Config): void {
  const figures = new Figures(supervisor);
  const metrics = new PromMetrics(figures);
  const jmx = new JmxView(figures, { windowSeconds: JMX_WINDOW_SECONDS });
  jmx.start();
  admin.route('/metrics', (req, res) => metrics.serve(req, res));
  admin.route('/jmx', (req, res) => jmx.serve(req, res));
  registerDashboard(admin);
}
