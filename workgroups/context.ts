// What every part of a workgroup reads of it: who it is, how it was
// configured, where it counts, its sessions' slab, the topics with
// subscriptions in flight, and its clock. The parts' host interfaces
// (SessionsHost, CommandsHost, DeliveryHost) add what each needs besides.
import type { WorkgroupOptions } from '../shm/workgroup-init';
import type { SessionSlab } from './slab';
import type { LocalTopics } from './topics';

export interface WorkgroupContext {
  readonly id: number;
  /** Workgroups in the node. */
  readonly count: number;
  readonly options: WorkgroupOptions;
  /** This workgroup's stats block (protocol/stats.ts). */
  readonly stats: Float64Array;
  readonly slab: SessionSlab;
  /** Topics with subscriptions in flight here. */
  readonly local: LocalTopics;
  /** The clock in whole seconds, as of the workgroup's last tick. */
  readonly nowSec: number;
  isDraining(): boolean;
}
