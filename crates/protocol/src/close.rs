//! WebSocket close codes the gateway uses (RFC 6455 §7.4; 4000–4999 are the
//! application's own). A client reads the code to decide whether to reconnect.

/// The gateway is shutting down or restarting: reconnect (to another instance or
/// shortly) and resume. RFC 6455's "Service Restart".
pub const RESTART: u16 = 1012;
/// A frame larger than the gateway's `max_frame_bytes`. RFC 6455's "Message Too Big".
pub const TOO_BIG: u16 = 1009;
/// The first frame was not a valid `connect`, or a frame after it broke the protocol
/// (a second `connect`, binary data). Do not retry unchanged.
pub const PROTOCOL_ERROR: u16 = 4000;
/// The token was missing, unknown, revoked or expired, or an identity header came from
/// an untrusted address. Do not retry with the same credentials.
pub const UNAUTHORIZED: u16 = 4001;
/// No protocol version in common: `hello` would have nothing to say.
pub const UNSUPPORTED_PROTOCOL: u16 = 4002;
/// No `connect` within the handshake deadline.
pub const CONNECT_TIMEOUT: u16 = 4003;
/// The key has as many sessions as it may hold; close one or wait for one to expire.
pub const TOO_MANY_SESSIONS: u16 = 4004;
/// The client did not keep up: the events it had not read fell out of the replay
/// window, or it sent requests faster than it read answers. Reconnect with `resume`;
/// `hello` says what was lost.
pub const SLOW_CONSUMER: u16 = 4008;
/// Nothing from the peer (not even a pong) for two heartbeat intervals.
pub const HEARTBEAT_TIMEOUT: u16 = 4009;
/// Another connection resumed this session; this one is replaced.
pub const SESSION_TAKEN_OVER: u16 = 4010;

/// Whether a client should reconnect (with `resume`) after this close code.
pub fn should_reconnect(code: u16) -> bool {
    matches!(
        code,
        RESTART | SLOW_CONSUMER | HEARTBEAT_TIMEOUT | 1001 | 1006 | 1011
    )
}
