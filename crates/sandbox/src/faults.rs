//! Fault injection shared by the three simulators: 5xx and 429 at a rate, latency, streams closed
//! every K events, stalled streams. Knobs can be changed at run time through `/_sandbox/faults`.
