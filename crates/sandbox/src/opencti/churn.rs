//! Background churn: updates, pattern changes, revocations, deletions, creations and merges at a
//! configurable rate, drawn from the seeded generator.

use std::time::Duration;

use rand::Rng;

use super::App;
use super::model::{self, Indicator};

/// The shape index producing `main_type` (for pattern changes that keep the observable type).
fn shape_for(main_type: &str) -> usize {
    match main_type {
        "IPv4-Addr" => 0,
        "IPv6-Addr" => 2,
        "Domain-Name" => 3,
        "Hostname" => 5,
        "Url" => 6,
        "Email-Addr" => 7,
        "StixFile" => 8,
        _ => 0,
    }
}

/// A new pattern of the same observable type for `ind`.
pub(crate) fn change_pattern(ind: &mut Indicator, rng: &mut rand::rngs::StdRng) {
    let shape = model::shape(shape_for(&ind.main_observable_type), rng);
    ind.pattern = shape.pattern;
    ind.pattern_type = shape.pattern_type.to_owned();
    ind.name = shape.name;
    ind.main_observable_type = shape.main_type.to_owned();
    ind.observable_values = shape.observables;
}

/// One churn operation; returns its name.
pub(crate) fn step(app: &App) -> &'static str {
    let config = app.churn.lock().expect("churn lock").clone();
    let store = &app.store;
    let weights = [
        config.updates,
        config.pattern_changes,
        config.revocations,
        config.deletions,
        config.creations,
        config.merges,
    ];
    let total: u32 = weights.iter().sum();
    if total == 0 {
        return "none";
    }
    let mut generator = store.generator.lock().expect("generator lock");
    let mut draw = generator.rng.random_range(0..total);
    let mut op = 0;
    for (k, w) in weights.iter().enumerate() {
        if draw < *w {
            op = k;
            break;
        }
        draw -= w;
    }
    let n = store.len();
    if n == 0 || op == 4 {
        let now = chrono::Utc::now();
        let k = generator.rng.random_range(0..model::SHAPES);
        let mut ind = generator.indicator(k, now, now);
        ind.revoked = false;
        drop(generator);
        store.create(ind);
        return "create";
    }
    let target = store.nth(generator.rng.random_range(0..n));
    let Some(target) = target else { return "none" };
    let id = target.internal_id.clone();
    match op {
        0 => {
            let score = generator.rng.random_range(0..=100u8);
            let extend = generator.rng.random_range(1..60);
            drop(generator);
            let _ = store.update(&id, |i| {
                i.score = Some(score);
                i.valid_until = chrono::Utc::now() + chrono::Duration::days(extend);
                Ok(())
            });
            "update"
        }
        1 => {
            let mut changed = (*target).clone();
            change_pattern(&mut changed, &mut generator.rng);
            drop(generator);
            let _ = store.update(&id, move |i| {
                i.pattern = changed.pattern;
                i.pattern_type = changed.pattern_type;
                i.name = changed.name;
                i.main_observable_type = changed.main_observable_type;
                i.observable_values = changed.observable_values;
                Ok(())
            });
            "pattern_change"
        }
        2 => {
            drop(generator);
            let _ = store.update(&id, |i| {
                i.revoked = true;
                Ok(())
            });
            "revocation"
        }
        3 => {
            drop(generator);
            let _ = store.delete(&id);
            "deletion"
        }
        _ => {
            let other = store.nth(generator.rng.random_range(0..n));
            drop(generator);
            match other {
                Some(o) if o.internal_id != id => {
                    let _ = store.merge(&id, std::slice::from_ref(&o.internal_id));
                    "merge"
                }
                _ => "none",
            }
        }
    }
}

/// The churn loop: every 10 ms, runs the operations that fell due at the current rate.
pub(crate) async fn run(app: App) {
    let tick = Duration::from_millis(10);
    let mut due = 0.0f64;
    loop {
        let rate = app.churn.lock().expect("churn lock").events_per_second;
        if rate <= 0.0 {
            due = 0.0;
            tokio::select! {
                _ = app.churn_changed.notified() => continue,
                _ = super::stream::stopped(app.stop.clone()) => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = super::stream::stopped(app.stop.clone()) => return,
        }
        due += rate * tick.as_secs_f64();
        // Never let a backlog build up beyond one second of operations.
        due = due.min(rate.max(1.0));
        while due >= 1.0 {
            due -= 1.0;
            step(&app);
        }
    }
}
