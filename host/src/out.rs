//! Console output that never panics.

/// `println!` that never panics: a closed stdout (piped into `head`, or a supervisor that
/// stopped reading) must not take the proxy down with it.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
pub(crate) use say;
