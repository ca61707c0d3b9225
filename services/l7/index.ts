// The L7 stage's public surface, for services/l7/main.ts and the flow process.
export { L7Stage, L7StageOptions, L7LogSink, AppMeterSink, DROP_REASONS, DropReason } from './stage';
export { ProtocolInference, InferenceOptions } from './inference';
export { DEFAULT_PARSERS, parserByName } from './registry';
export * from './parser';
