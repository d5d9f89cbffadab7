// The c10m client SDK, for browsers (dist/sdk-bundle/c10m.js, served at /sdk/c10m.js)
// and Node (dist/sdk/index.js). The Node-only HTTP publisher is sdk/http-publisher.ts.
export { connect, C10mClient, sessionUrl } from './client';
export type { ConnectOptions, SubscribeOptions, PublishOptions, PublishAck, ConnectionState, ClientEvents, MessageHandler, Subscription, ClientStats } from './client';
export type { Message } from './wire';
export type { Gap, Recovered } from './stream';
export { TopicStream } from './stream';
export { backoffDelayMs, backoffCeilingMs, resolveBackoff, ReconnectSchedule, DEFAULT_BACKOFF } from './backoff';
export type { BackoffOptions, Clock } from './backoff';
export { C10mError, SdkErrorCode } from './errors';
export { ErrorCode, CloseCode } from '../protocol/errors';
export { topicError, isValidTopic } from '../protocol/topic';
export type { Encoding, Qos } from './encoding';
export type { TransportMode } from './sse-transport';
