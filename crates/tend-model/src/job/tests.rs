use super::*;

fn z(text: &str) -> Zoned {
    text.parse().unwrap()
}

fn fires(pattern: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
    let s = Schedule::parse(pattern).unwrap();
    let after = z(after).timestamp().as_millisecond();
    next_fires(&s, &zone(tz).unwrap(), 0, after, n)
        .iter()
        .map(format_fire)
        .collect()
}

#[test]
fn a_fixed_time_in_the_spring_forward_gap_fires_once_at_the_first_valid_time_after() {
    // 2026-03-08 02:00 does not exist in New York: the clock goes to 03:00.
    assert_eq!(
        fires(
            "30 2 * * *",
            "America/New_York",
            "2026-03-07T12:00-05:00[America/New_York]",
            3
        ),
        [
            "2026-03-08T03:00:00-04:00".to_string(),
            "2026-03-09T02:30:00-04:00".to_string(),
            "2026-03-10T02:30:00-04:00".to_string(),
        ]
    );
}

#[test]
fn a_fixed_time_in_the_repeated_fall_back_hour_fires_once() {
    // 2026-11-01 01:00–02:00 happens twice in New York.
    assert_eq!(
        fires(
            "30 1 * * *",
            "America/New_York",
            "2026-10-31T12:00-04:00[America/New_York]",
            2
        ),
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
    );
}

#[test]
fn an_interval_pattern_fires_through_both_copies_of_the_repeated_hour() {
    assert_eq!(
        fires(
            "*/30 * * * *",
            "America/New_York",
            "2026-11-01T00:50-04:00[America/New_York]",
            5
        ),
        [
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T02:00:00-05:00",
        ]
    );
}

#[test]
fn an_interval_pattern_skips_only_what_the_gap_removes() {
    assert_eq!(
        fires(
            "0 * * * *",
            "Europe/Berlin",
            "2026-03-29T00:30+01:00[Europe/Berlin]",
            3
        ),
        [
            "2026-03-29T01:00:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T04:00:00+02:00",
        ]
    );
}

#[test]
fn every_counts_from_the_anchor_whatever_the_zone() {
    let s = Schedule::parse("@every 10s").unwrap();
    let utc = zone("UTC").unwrap();
    let got: Vec<i64> = next_fires(&s, &utc, 1_003, 25_000, 3)
        .iter()
        .map(|z| z.timestamp().as_millisecond())
        .collect();
    assert_eq!(got, [31_003, 41_003, 51_003]);
    // Before the anchor: the first slot after it.
    let first = next_fires(&s, &utc, 1_003, 0, 1);
    assert_eq!(first[0].timestamp().as_millisecond(), 11_003);
}

#[test]
fn due_counts_the_fires_owed_and_names_the_latest() {
    let utc = zone("UTC").unwrap();
    let every = Schedule::parse("@every 1s").unwrap();
    assert_eq!(due(&every, &utc, 0, 0, 999), (0, None));
    assert_eq!(due(&every, &utc, 0, 0, 1_000), (1, Some(1_000)));
    assert_eq!(due(&every, &utc, 0, 1_000, 10_500), (9, Some(10_000)));
    let cron = Schedule::parse("*/15 * * * * *").unwrap();
    assert_eq!(due(&cron, &utc, 0, 0, 60_000), (4, Some(60_000)));
    assert_eq!(due(&cron, &utc, 0, 60_000, 60_000), (0, None));
}

#[test]
fn schedules_are_refused_in_one_sentence() {
    for bad in [
        "61 * * * *",
        "@every 0s",
        "@every 500ms",
        "* * *",
        "@fortnightly",
        "* * * * * * *",
    ] {
        let e = Schedule::parse(bad).unwrap_err();
        assert!(!e.contains('\n'), "{bad}: {e}");
    }
    for good in [
        "*/5 * * * *",
        "*/1 * * * * *",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@every 1s",
        "@every 2h",
    ] {
        Schedule::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

#[test]
fn a_job_is_checked_field_by_field() {
    let ok = JobSpec {
        name: "backup".into(),
        run: RunOptions {
            command: vec!["true".into()],
            ..RunOptions::default()
        },
        schedule: Some("@daily".into()),
        ..JobSpec::default()
    };
    let d = ok.clone().check(&Policy::default(), "UTC").unwrap();
    assert_eq!(
        (d.timezone.as_str(), d.concurrency),
        ("UTC", Concurrency::Allow)
    );
    let field = |mut f: Box<dyn FnMut(&mut JobSpec)>| {
        let mut j = ok.clone();
        f(&mut j);
        j.check(&Policy::default(), "UTC").unwrap_err().field
    };
    assert_eq!(field(Box::new(|j| j.name = "a b".into())), "name");
    assert_eq!(field(Box::new(|j| j.name = String::new())), "name");
    assert_eq!(field(Box::new(|j| j.run.command.clear())), "command");
    assert_eq!(
        field(Box::new(|j| j.schedule = Some("61 * * * *".into()))),
        "schedule"
    );
    assert_eq!(
        field(Box::new(|j| j.timezone = Some("Mars/Olympus".into()))),
        "timezone"
    );
}

#[test]
fn job_refs_show_the_attempt_only_after_the_first() {
    assert_eq!(job_ref("backup", 42, 1), "backup#42");
    assert_eq!(job_ref("backup", 42, 2), "backup#42.2");
}
