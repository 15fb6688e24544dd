//! Leader election on a `coordination.k8s.io/v1` Lease, so running several replicas is safe:
//! only the holder of the Lease reconciles, and a holder that cannot renew in time stops acting
//! before another replica may take over, then stands by to take the Lease back. Writes use the Lease's resourceVersion, so two candidates can
//! never both win the same round.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

/// What a candidate should do given the current Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No Lease exists yet.
    Create,
    /// The Lease is free or expired: take it over.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a valid Lease.
    Wait { holder: String },
}

/// Pure decision on the current Lease state.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseDecision {
    let Some(spec) = spec else {
        return LeaseDecision::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() {
        return LeaseDecision::Acquire;
    }
    let duration =
        SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15).max(1)));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(renewed)
            if renewed
                .saturating_add(duration)
                .is_ok_and(|expiry| expiry > now) =>
        {
            LeaseDecision::Wait { holder }
        }
        _ => LeaseDecision::Acquire,
    }
}

/// A candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
        }
    }

    fn retry_period(&self) -> Duration {
        (self.duration / 5).max(Duration::from_millis(200))
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let same_holder =
            previous.and_then(|p| p.holder_identity.as_deref()) == Some(self.identity.as_str());
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: if same_holder {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if same_holder || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }

    /// One round, bounded by the retry period (a stalled API server must not hold a renewal
    /// past its deadline): true when we hold the Lease afterwards.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        match tokio::time::timeout(self.retry_period(), self.round()).await {
            Ok(result) => result,
            Err(_) => Err(kube::Error::Service(
                format!(
                    "no answer from the API server within {:?}",
                    self.retry_period()
                )
                .into(),
            )),
        }
    }

    async fn round(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        // A Lease without a spec (as the charts create it, so `helm uninstall` removes it) is
        // free to take.
        let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        match decide(spec.as_ref(), &self.identity, now) {
            LeaseDecision::Wait { holder } => {
                tracing::debug!(lease = %self.name, %holder, "lease held by another replica");
                Ok(false)
            }
            LeaseDecision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, now)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            LeaseDecision::Acquire | LeaseDecision::Renew => {
                let Some(mut lease) = current else {
                    return Ok(false);
                };
                lease.spec = Some(self.spec(lease.spec.as_ref(), now));
                // replace carries metadata.resourceVersion: a concurrent writer makes this a 409.
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        let mut logged = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired leadership");
                    return;
                }
                Ok(false) => {
                    if !logged {
                        tracing::info!(lease = %self.name, "another replica is leader; standing by");
                        logged = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "leader election attempt failed")
                }
            }
            tokio::time::sleep(self.retry_period()).await;
        }
    }

    /// Renews the Lease until it is lost; returns why. A replica that cannot renew within two
    /// thirds of the lease duration gives up, before another replica may take over.
    pub async fn hold(&self) -> String {
        let renew_every = self.duration / 3;
        let deadline = self.duration * 2 / 3;
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(renew_every.min(self.retry_period() * 2)).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    return format!(
                        "lost leadership: lease {} is now held by another replica",
                        self.name
                    );
                }
                Err(e) => {
                    if last_renewed.elapsed() > deadline {
                        return format!(
                            "lost leadership: could not renew lease {} in time: {e}",
                            self.name
                        );
                    }
                    tracing::warn!(lease = %self.name, error = %e, "lease renewal failed; retrying");
                }
            }
        }
    }

    /// Gives the Lease up on a clean shutdown so a standby takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await {
            let ours = lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.identity.as_str());
            if ours {
                if let Some(spec) = lease.spec.as_mut() {
                    spec.holder_identity = None;
                }
                let _ = self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid")
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(None, "a", at(100)), LeaseDecision::Create);
        assert_eq!(
            decide(Some(&held_by("a", 99)), "a", at(100)),
            LeaseDecision::Renew
        );
        assert_eq!(
            decide(Some(&held_by("b", 90)), "a", at(100)),
            LeaseDecision::Wait { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&held_by("b", 80)), "a", at(100)),
            LeaseDecision::Acquire
        );
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", at(100)),
            LeaseDecision::Acquire
        );
    }
}
