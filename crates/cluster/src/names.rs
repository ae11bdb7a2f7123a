//! The names of everything the distributed mode creates in NATS, derived from one prefix so
//! several deployments can share a NATS cluster.
//!
//! Job names may contain `.`, which separates subject tokens; in subjects and KV keys a job is
//! written with `.` replaced by `=`, a character job names cannot hold.

/// Stream, consumer, subject and bucket names under one prefix (default `rubricmill`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Default for Names {
    fn default() -> Self {
        Self::new("rubricmill")
    }
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Checks that the prefix can be used as a subject token and in bucket names.
    pub fn validate(prefix: &str) -> Result<(), String> {
        let ok = !prefix.is_empty()
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            return Ok(());
        }
        Err(format!(
            "{prefix:?} must be letters, digits, '-' or '_' (it names subjects, a stream and KV buckets)"
        ))
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The work-queue stream holding every job's shards.
    pub fn stream(&self) -> String {
        format!(
            "{}_SHARDS",
            self.prefix.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// The durable pull consumer the worker fleet shares.
    pub fn consumer(&self) -> String {
        format!("{}-workers", self.prefix)
    }

    pub fn shard_subjects(&self) -> String {
        format!("{}.shards.>", self.prefix)
    }

    pub fn job_shard_subjects(&self, job: &str) -> String {
        format!("{}.shards.{}.>", self.prefix, job_token(job))
    }

    pub fn shard_subject(&self, job: &str, shard: &str) -> String {
        format!("{}.shards.{}.{shard}", self.prefix, job_token(job))
    }

    /// Job and shard of a shard subject.
    pub fn parse_shard_subject(&self, subject: &str) -> Option<(String, String)> {
        let rest = subject.strip_prefix(&format!("{}.shards.", self.prefix))?;
        let (job, shard) = rest.split_once('.')?;
        Some((job_name(job), shard.to_owned()))
    }

    /// Core-NATS subject of one job's worker events.
    pub fn events(&self, job: &str) -> String {
        format!("{}.events.{}", self.prefix, job_token(job))
    }

    pub fn all_events(&self) -> String {
        format!("{}.events.*", self.prefix)
    }

    /// Core-NATS subject on which workers tell each other to pause an endpoint.
    pub fn rate_limits(&self) -> String {
        format!("{}.ratelimit", self.prefix)
    }

    /// Advisory the server publishes when a message of our consumer reaches max_deliver.
    pub fn max_deliveries_advisory(&self) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
            self.stream(),
            self.consumer()
        )
    }

    pub fn jobs_bucket(&self) -> String {
        format!("{}-jobs", self.prefix)
    }

    pub fn progress_bucket(&self) -> String {
        format!("{}-progress", self.prefix)
    }

    pub fn shards_bucket(&self) -> String {
        format!("{}-shards", self.prefix)
    }

    pub fn workers_bucket(&self) -> String {
        format!("{}-workers", self.prefix)
    }

    /// Every KV bucket of the cluster state: jobs, progress, shards, workers.
    pub fn buckets(&self) -> [String; 4] {
        [
            self.jobs_bucket(),
            self.progress_bucket(),
            self.shards_bucket(),
            self.workers_bucket(),
        ]
    }

    /// KV key of a job in the jobs and progress buckets.
    pub fn job_key(&self, job: &str) -> String {
        job_token(job)
    }

    /// KV key of a shard in the shards bucket.
    pub fn shard_key(&self, job: &str, shard: &str) -> String {
        format!("{}.{shard}", job_token(job))
    }

    /// KV key filter matching every shard key of a job.
    pub fn job_shard_keys(&self, job: &str) -> String {
        format!("{}.>", job_token(job))
    }
}

/// A job name as one subject token (or KV key segment).
pub fn job_token(job: &str) -> String {
    job.replace('.', "=")
}

/// Inverse of [`job_token`].
pub fn job_name(token: &str) -> String {
    token.replace('=', ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_job_names_round_trip_through_subjects() {
        let names = Names::default();
        let subject = names.shard_subject("survey.v2", "abc123");
        assert_eq!(subject, "rubricmill.shards.survey=v2.abc123");
        assert_eq!(
            names.parse_shard_subject(&subject),
            Some(("survey.v2".into(), "abc123".into()))
        );
        assert_eq!(names.parse_shard_subject("other.shards.a.b"), None);
    }

    #[test]
    fn names_follow_the_prefix() {
        let names = Names::new("team-a");
        assert_eq!(names.stream(), "TEAM_A_SHARDS");
        assert_eq!(names.consumer(), "team-a-workers");
        assert_eq!(names.jobs_bucket(), "team-a-jobs");
        assert!(Names::validate("team-a").is_ok());
        assert!(Names::validate("a.b").is_err());
        assert!(Names::validate("").is_err());
    }
}
