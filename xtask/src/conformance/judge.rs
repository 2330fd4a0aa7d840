//! The judge: a case's expectations applied to what the suite observed.

use super::*;

fn describe(messages: &[Expected]) -> String {
    if messages.is_empty() {
        return "nothing".into();
    }
    let parts: Vec<String> = messages
        .iter()
        .take(8)
        .map(|m| match m {
            Expected::Text(t) => format!("text({} bytes)", t.len()),
            Expected::Binary(b) => format!("binary({} bytes)", b.len()),
            Expected::Pong(p) => format!("pong({} bytes)", p.len()),
        })
        .collect();
    let more =
        if messages.len() > 8 { format!(" … {} in all", messages.len()) } else { String::new() };
    format!("{}{more}", parts.join(", "))
}

fn code_name(code: Option<Option<u16>>) -> String {
    match code {
        None => "none".into(),
        Some(None) => "empty close frame".into(),
        Some(Some(c)) => c.to_string(),
    }
}

/// Applies the case's expectations to what was observed.
pub(super) fn judge(case: &Case, mode: Mode, o: Observed, duration: Duration) -> CaseResult {
    let messages_ok = o.messages == case.expect;
    let closed_by = match (o.peer_ended_tcp, o.suite_ended_tcp) {
        (true, _) => "peer",
        (false, true) => "suite",
        _ => "nobody (timeout)",
    };
    // In server mode the server must end TCP; in client mode the suite (the server) does.
    let tcp_ok = match mode {
        Mode::Server => o.peer_ended_tcp,
        Mode::Client => o.suite_ended_tcp || o.peer_ended_tcp,
    };
    let (verdict, reason) = if let Some(violation) = &o.violation {
        (Verdict::Failed, violation.clone())
    } else if let Some(err) =
        o.peer_reset.as_ref().filter(|_| case.outcome != Outcome::Informational)
    {
        // A reset discards what was in flight: it is never a clean close.
        (Verdict::Failed, format!("the connection was reset, not closed: {err}"))
    } else {
        match &case.outcome {
            Outcome::Informational => {
                (Verdict::Informational, format!("peer closed with {}", code_name(o.peer_close)))
            }
            _ if o.timed_out => (Verdict::Failed, "the connection was not closed in time".into()),
            // Messages must match exactly when the connection ends normally. When it fails or
            // we close, an implementation may stop before echoing everything it received
            // first: a prefix of the expected messages is NON-STRICT, as in Autobahn.
            Outcome::Echo if !messages_ok => (
                Verdict::Failed,
                format!("expected {}, received {}", describe(&case.expect), describe(&o.messages)),
            ),
            _ if !case.expect.starts_with(&o.messages) => (
                Verdict::Failed,
                format!("expected {}, received {}", describe(&case.expect), describe(&o.messages)),
            ),
            Outcome::Echo => match o.peer_close {
                Some(Some(1000)) if tcp_ok => (Verdict::Ok, String::new()),
                Some(Some(1000)) => (Verdict::Failed, "the peer did not close TCP".into()),
                other => (
                    Verdict::Failed,
                    format!("expected a 1000 answer to our close, got {}", code_name(other)),
                ),
            },
            Outcome::Answer(codes) => match o.peer_close {
                Some(code) if codes.contains(&code) && tcp_ok => (Verdict::Ok, String::new()),
                Some(code) if codes.contains(&code) => {
                    (Verdict::Failed, "the peer did not close TCP".into())
                }
                other => {
                    (Verdict::Failed, format!("expected close {codes:?}, got {}", code_name(other)))
                }
            },
            Outcome::Fail(codes) | Outcome::FailFast(codes) => match o.peer_close {
                Some(Some(code)) if codes.contains(&code) => {
                    if matches!(case.outcome, Outcome::FailFast(_)) && !o.close_before_final_write {
                        (
                            Verdict::NonStrict,
                            "failed, but only after the rest of the message was sent".into(),
                        )
                    } else if !tcp_ok {
                        (Verdict::Failed, "the peer did not close TCP".into())
                    } else {
                        (Verdict::Ok, String::new())
                    }
                }
                None if o.peer_ended_tcp => {
                    (Verdict::NonStrict, "dropped TCP without a close frame".into())
                }
                other => {
                    (Verdict::Failed, format!("expected close {codes:?}, got {}", code_name(other)))
                }
            },
        }
    };
    let (verdict, reason) = if verdict == Verdict::Ok && !messages_ok {
        let why = format!(
            "closed before echoing all: expected {}, received {}",
            describe(&case.expect),
            describe(&o.messages)
        );
        (Verdict::NonStrict, why)
    } else {
        (verdict, reason)
    };
    let expected = match &case.outcome {
        Outcome::Echo => format!("{}; close 1000 answered", describe(&case.expect)),
        Outcome::Answer(codes) => {
            format!("{}; our close answered with {codes:?}", describe(&case.expect))
        }
        Outcome::Fail(codes) => format!("{}; peer fails with {codes:?}", describe(&case.expect)),
        Outcome::FailFast(codes) => {
            format!("{}; peer fails with {codes:?} before the end", describe(&case.expect))
        }
        Outcome::Informational => "informational".into(),
    };
    CaseResult {
        id: case.id.clone(),
        description: case.description.clone(),
        verdict,
        reason,
        expected,
        observed: format!("{}; peer close {}", describe(&o.messages), code_name(o.peer_close)),
        peer_close: o.peer_close,
        suite_close: o.suite_close,
        closed_by,
        duration,
        wire_log: o.log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(id: &str) -> Case {
        cases::catalogue().into_iter().find(|c| c.id == id).expect("case exists")
    }

    fn observed(messages: Vec<Expected>, peer_close: Option<Option<u16>>) -> Observed {
        Observed {
            messages,
            peer_close,
            peer_ended_tcp: true,
            close_before_final_write: true,
            ..Observed::default()
        }
    }

    #[test]
    fn the_catalogue_has_517_cases_with_unique_ids() {
        let cases = cases::catalogue();
        // 301 in sections 1-7, 9 and 10; 90 in section 12; 126 in section 13.
        assert_eq!(cases.len(), 517);
        let mut ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 517);
    }

    #[test]
    fn verdicts_follow_the_rules() {
        let echo = find("1.1.2");
        let ok = observed(echo.expect.clone(), Some(Some(1000)));
        assert_eq!(judge(&echo, Mode::Server, ok, Duration::ZERO).verdict, Verdict::Ok);
        let missing = observed(vec![], Some(Some(1000)));
        assert_eq!(judge(&echo, Mode::Server, missing, Duration::ZERO).verdict, Verdict::Failed);
        let not_closed =
            Observed { peer_ended_tcp: false, ..observed(echo.expect.clone(), Some(Some(1000))) };
        assert_eq!(judge(&echo, Mode::Server, not_closed, Duration::ZERO).verdict, Verdict::Failed);

        // 3.2: text echoed, then fail with 1002. Without the echo: NON-STRICT. Wrong code: FAILED.
        let fail = find("3.2");
        let full = observed(fail.expect.clone(), Some(Some(1002)));
        assert_eq!(judge(&fail, Mode::Server, full, Duration::ZERO).verdict, Verdict::Ok);
        let early = observed(vec![], Some(Some(1002)));
        assert_eq!(judge(&fail, Mode::Server, early, Duration::ZERO).verdict, Verdict::NonStrict);
        let wrong = observed(fail.expect.clone(), Some(Some(1000)));
        assert_eq!(judge(&fail, Mode::Server, wrong, Duration::ZERO).verdict, Verdict::Failed);
        let dropped = observed(fail.expect.clone(), None);
        assert_eq!(judge(&fail, Mode::Server, dropped, Duration::ZERO).verdict, Verdict::NonStrict);
        // A reset is never a clean close, even after the right close frame.
        // (TCP counted as ended too, so that only the reset can fail it.)
        let reset = Observed {
            peer_reset: Some("connection reset by peer".into()),
            ..observed(fail.expect.clone(), Some(Some(1002)))
        };
        let verdict = judge(&fail, Mode::Server, reset, Duration::ZERO);
        assert_eq!(verdict.verdict, Verdict::Failed);
        assert!(verdict.reason.contains("reset"), "{}", verdict.reason);

        // 6.4.1: failing only after the last write is NON-STRICT.
        let fast = find("6.4.1");
        let late =
            Observed { close_before_final_write: false, ..observed(vec![], Some(Some(1007))) };
        assert_eq!(judge(&fast, Mode::Server, late, Duration::ZERO).verdict, Verdict::NonStrict);
        let timed_out = Observed { timed_out: true, ..observed(vec![], None) };
        assert_eq!(judge(&fast, Mode::Server, timed_out, Duration::ZERO).verdict, Verdict::Failed);
    }
}
