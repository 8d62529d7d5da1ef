//! The stop signal is caught from the moment `stop_signal()` is called, before its future is
//! first polled: a service that announces its address after calling it cannot be killed by a
//! signal sent the moment the address appears. Its own test binary, since it signals the process.

#![cfg(unix)]

use std::process::Command;
use std::time::Duration;

/// Sends `signal` to this test process and waits until it has surely been delivered.
fn send_to_self(signal: &str) {
    let sent = Command::new("kill").args([signal, &std::process::id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill {signal}");
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn a_signal_sent_before_the_first_poll_stops_instead_of_killing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for signal in ["-INT", "-TERM"] {
        let stop = {
            let _inside = runtime.enter();
            gantry_serve::stop_signal()
        };
        // Not yet polled. Without the handlers in place the default action would end this
        // process here, and the test binary would fail on the signal.
        send_to_self(signal);
        let stopped = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), stop).await });
        assert!(stopped.is_ok(), "{signal} sent before the first poll was not seen");
    }
}
