// The generated protobuf code, configured so that 64-bit fields decode to plain numbers.
// Times in µs since the epoch (~2^51) and counters stay exact below 2^53, and plain numbers keep
// Long objects off the hot paths. Import the schema from here, never from proto/gen directly.
import protobuf from 'protobufjs/minimal';

protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long;
protobuf.configure();

// eslint-disable-next-line @typescript-eslint/no-require-imports
export { flowtap } from '../proto/gen/flowtap';
