// Per-session costs and sizing assumptions behind every computed profile.
// One place, so that a benchmark that measures better figures changes them
// here and every profile, doctor check and capacity table follows.

/**
 * Measured on the 2-core / 24 GiB development machines (docs/ARCHITECTURE.md,
 * "Limits of the machines we build on"), idle subscribed sessions over
 * loopback. Update from bench/RESULTS.md.
 */
export const MEASURED = {
  /** Server RSS per idle session, raw uWebSockets.js: ~1.0 KB (0.91 KB at 994,500 sessions over 51 processes). */
  serverBytesPerSession: 1024,
  /** Kernel memory per idle server-side TCP socket (struct sock, file, inode, epoll item): ~4 KB. */
  kernelBytesPerSocket: 4096,
} as const;

/** Default arena bytes per session when the caller gives none: the measured server RSS, a conservative stand-in until the slabs are measured alone. */
export const DEFAULT_MEMORY_PER_SESSION_BYTES = MEASURED.serverBytesPerSession;

/** Socket buffer memory the kernel may charge to one socket before TCP enters memory pressure: one page, a few small frames queued in a fan-out burst. tcp_mem is sized from it. */
export const TCP_BUFFER_BYTES_PER_SOCKET = 4096;

/** tcp_mem thresholds as multiples of the per-socket buffer budget: [no regulation below, pressure from, hard cap]. */
export const TCP_MEM_FACTORS = [1, 1.25, 1.5] as const;

/** The reference server's per-socket send buffer sizes (min, default, max), for tcp_wmem. */
export const TCP_BUFFER_SIZES = [1024, 4096, 16384] as const;
/**
 * Receive buffer sizes for tcp_rmem. Not the reference's 1024: Linux 6.18
 * refuses a tcp_rmem minimum below one page (EINVAL for "1024 4096 16384";
 * "4096 4096 16384" is accepted, and tcp_wmem still takes 1024), and older
 * kernels accept 4096 too. The minimum only matters under memory pressure,
 * and clients send little (commands), so a page costs nothing in practice.
 */
export const TCP_RMEM_SIZES = [4096, 4096, 16384] as const;

/** Cap for SO_RCVBUF/SO_SNDBUF set by an application (net.core.rmem_max/wmem_max), as the reference server. */
export const SOCKET_BUFFER_MAX_BYTES = 16384;

/** Descriptors one server process uses besides its sessions: stdio, libuv's epoll/eventfd/signal pipe, logs, admin and Redis sockets. */
export const DESCRIPTOR_RESERVE_BASE = 64;
/** Descriptors per workgroup besides its sessions: its thread's event loop, its listen socket, its doorbell. */
export const DESCRIPTOR_RESERVE_PER_WORKGROUP = 8;
/** Headroom on top of what N sessions need, for reconnect storms (a new socket is accepted before the old one is closed) and for sockets in close. */
export const DESCRIPTOR_HEADROOM = 0.2;
/** Descriptors left to the rest of the system in fs.file-max. */
export const SYSTEM_FILES_RESERVE = 65536;

/** Fixed arena bytes per workgroup besides the session slab: rings to the other workgroups, stats block, topic table base. An assumption until native-io reports its arena sizes. */
export const ARENA_BYTES_PER_WORKGROUP = 32 * 1024 * 1024;
/** Node.js baseline per server process (V8 heap, code, libuv) and per workgroup thread (its isolate and uWS loop). */
export const PROCESS_BASE_BYTES = 64 * 1024 * 1024;
export const WORKGROUP_BASE_BYTES = 16 * 1024 * 1024;

/** Kernel bytes per conntrack entry (struct nf_conn and its hash slot), when the public port is tracked. */
export const CONNTRACK_BYTES_PER_ENTRY = 320;

/** uSockets listens with this backlog (fixed in uSockets); the kernel caps it at net.core.somaxconn. */
export const USOCKETS_LISTEN_BACKLOG = 512;

export const PAGE_BYTES = 4096;
export const HUGE_PAGE_BYTES = 2 * 1024 * 1024;

/** Server defaults the profile and the deploy files agree with. */
export const DEFAULT_PUBLIC_PORT = 8080;
export const DEFAULT_ADMIN_PORT = 9090;
export const DEFAULT_DRAIN_TIMEOUT_SECONDS = 10;

/** Floors: a profile never lowers a common kernel default, whatever N. */
export const FLOORS = {
  nofile: 65536,
  nrOpen: 1048576,
  fileMax: 1048576,
  tcpMemPages: [65536, 98304, 131072],
  somaxconn: 4096,
  synBacklog: 4096,
  conntrackMax: 262144,
} as const;

/** `--processes auto` sizes each node process this much below what its descriptor limit holds: reconnect storms open a socket before the old one is closed. */
export const AUTO_PROCESS_HEADROOM = 0.05;
/** Most node processes `--processes` may ask for (each is a few tens of MB even empty). */
export const MAX_PROCESSES = 1024;

/** Sessions a node is sized for when nobody says (serve's --max-sessions, and what doctor and the sysctl profile check by default). */
export const DEFAULT_MAX_SESSIONS = 1_000_000;
