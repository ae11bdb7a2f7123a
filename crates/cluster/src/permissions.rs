//! The NATS subject permissions of each role of the distributed mode, derived from the same
//! [`Names`] the code uses, and rendered as a nats-server `authorization` block. Each role may
//! publish and subscribe to exactly what its commands use: the JetStream API subjects of the
//! shard stream, its consumer and the four KV buckets, the KV subjects, the core-NATS event
//! and rate-limit subjects, and reply inboxes.
//!
//! - `submitter` (`submit`, `retry`, `cancel`): creates and configures the stream, consumer
//!   and buckets, plans jobs into the jobs bucket, publishes and purges shards.
//! - `coordinator`: the same assets, progress and failure records, the max-deliveries
//!   advisory, worker events, sweeping stranded messages.
//! - `worker`: pulls and acks shards, writes heartbeats, failure records and halts, publishes
//!   events and rate-limit pauses. It creates nothing but the fleet's consumer when missing.
//! - `status` (`status`): reads only.

use crate::Names;

/// A role in the distributed mode, with its own NATS user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Submitter,
    Coordinator,
    Worker,
    Status,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Submitter,
        Role::Coordinator,
        Role::Worker,
        Role::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Coordinator => "coordinator",
            Role::Worker => "worker",
            Role::Status => "status",
        }
    }

    /// The environment variable the server reads this role's password from.
    pub fn password_env(self) -> String {
        format!(
            "RUBRICMILL_NATS_{}_PASSWORD",
            self.as_str().to_ascii_uppercase()
        )
    }
}

/// Subjects a role may publish to and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

/// What `role` needs under `names`.
pub fn permissions(names: &Names, role: Role) -> Permissions {
    let stream = names.stream();
    let consumer = names.consumer();
    let buckets = names.buckets();
    let prefix = names.prefix();
    // Everyone opens the cluster state: reads the stream, the consumer and every bucket.
    let mut publish = vec![
        "$JS.API.INFO".to_owned(),
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"),
    ];
    for bucket in &buckets {
        publish.push(format!("$JS.API.STREAM.INFO.KV_{bucket}"));
        publish.push(format!("$JS.API.STREAM.MSG.GET.KV_{bucket}"));
        publish.push(format!("$JS.API.DIRECT.GET.KV_{bucket}.>"));
    }
    let mut subscribe = vec!["_INBOX.>".to_owned()];
    let create_assets = |publish: &mut Vec<String>| {
        publish.push(format!("$JS.API.STREAM.CREATE.{stream}"));
        publish.push(format!("$JS.API.STREAM.UPDATE.{stream}"));
        for bucket in &buckets {
            publish.push(format!("$JS.API.STREAM.CREATE.KV_{bucket}"));
        }
    };
    let create_consumer = |publish: &mut Vec<String>| {
        publish.push(format!("$JS.API.CONSUMER.CREATE.{stream}.{consumer}"));
        publish.push(format!("$JS.API.CONSUMER.CREATE.{stream}.{consumer}.>"));
        publish.push(format!(
            "$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{consumer}"
        ));
    };
    let kv_write = |publish: &mut Vec<String>, bucket: &str| {
        publish.push(format!("$KV.{bucket}.>"));
    };
    // Submit and the coordinator configure the cluster state and queue shards: they create the
    // assets, publish shards, read queued ones back and purge them.
    let manage_queue = |publish: &mut Vec<String>| {
        create_assets(publish);
        create_consumer(publish);
        publish.push(names.shard_subjects());
        publish.push(format!("$JS.API.STREAM.PURGE.{stream}"));
        publish.push(format!("$JS.API.STREAM.MSG.GET.{stream}"));
        publish.push(format!("$JS.API.DIRECT.GET.{stream}.>"));
    };
    match role {
        Role::Status => {}
        Role::Submitter => {
            manage_queue(&mut publish);
            kv_write(&mut publish, &names.jobs_bucket());
            kv_write(&mut publish, &names.shards_bucket());
        }
        Role::Coordinator => {
            manage_queue(&mut publish);
            publish.push(format!("$JS.API.STREAM.MSG.DELETE.{stream}"));
            for bucket in &buckets {
                kv_write(&mut publish, bucket);
            }
            subscribe.push(names.all_events());
            subscribe.push(names.max_deliveries_advisory());
            // Its web UI counts the fleet's rate-limit pauses.
            subscribe.push(names.rate_limits());
        }
        Role::Worker => {
            create_consumer(&mut publish);
            publish.push(format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"));
            publish.push(format!("$JS.ACK.{stream}.{consumer}.>"));
            // Halting a job purges its queued shards.
            publish.push(format!("$JS.API.STREAM.PURGE.{stream}"));
            kv_write(&mut publish, &names.jobs_bucket());
            kv_write(&mut publish, &names.shards_bucket());
            kv_write(&mut publish, &names.workers_bucket());
            // Following the fleet: an ordered consumer on the heartbeats bucket.
            let workers = names.workers_bucket();
            publish.push(format!("$JS.API.CONSUMER.CREATE.KV_{workers}"));
            publish.push(format!("$JS.API.CONSUMER.CREATE.KV_{workers}.>"));
            publish.push(format!("$JS.API.CONSUMER.DELETE.KV_{workers}.>"));
            publish.push(format!("$JS.FC.KV_{workers}.>"));
            publish.push(format!("{prefix}.events.*"));
            publish.push(names.rate_limits());
            subscribe.push(names.rate_limits());
        }
    }
    Permissions { publish, subscribe }
}

/// A nats-server `authorization` block with one user per role, named `<prefix>-<role>`, whose
/// password the server reads from its environment ([`Role::password_env`]).
pub fn server_authorization(names: &Names) -> String {
    let quote = |subjects: &[String]| {
        subjects
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::from("authorization {\n  users = [\n");
    for role in Role::ALL {
        let permissions = permissions(names, role);
        out.push_str(&format!(
            "    {{\n      user: \"{}-{}\"\n      password: ${}\n      permissions: {{\n        publish: {{ allow: [{}] }}\n        subscribe: {{ allow: [{}] }}\n      }}\n    }}\n",
            names.prefix(),
            role.as_str(),
            role.password_env(),
            quote(&permissions.publish),
            quote(&permissions.subscribe),
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_role_writes_nothing() {
        let names = Names::default();
        let status = permissions(&names, Role::Status);
        assert!(
            status.publish.iter().all(|s| s.starts_with("$JS.API.")
                && !s.contains("CREATE")
                && !s.contains("PURGE")
                && !s.contains("DELETE")),
            "{status:?}"
        );
        assert_eq!(status.subscribe, vec!["_INBOX.>".to_owned()]);
    }

    #[test]
    fn no_role_gets_everything() {
        let names = Names::new("team-a");
        for role in Role::ALL {
            let granted = permissions(&names, role);
            for subject in granted.publish.iter().chain(&granted.subscribe) {
                assert!(
                    subject != ">" && subject != "$JS.API.>" && subject != "$KV.>",
                    "{role:?} gets {subject}"
                );
            }
        }
        let worker = permissions(&names, Role::Worker);
        assert!(worker.subscribe.contains(&"team-a.ratelimit".to_owned()));
        assert!(worker.publish.contains(&"$KV.team-a-workers.>".to_owned()));
        assert!(!worker.publish.iter().any(|s| s.contains("team-a.shards")));
    }

    /// deploy/nats/auth.conf is this module's output for the default prefix; regenerate it with
    /// `RUBRICMILL_WRITE_NATS_AUTH=1 cargo test -p rubricmill-cluster shipped`.
    #[test]
    fn the_shipped_server_authorization_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats/auth.conf");
        let header = "# NATS users of rubricmill, one per role, for the prefix \"rubricmill\". Generated by\n\
                      # crates/cluster/src/permissions.rs (a test checks it is current); the server reads\n\
                      # each password from its environment. Include it from a server config.\n";
        let want = format!("{header}{}", server_authorization(&Names::default()));
        if std::env::var("RUBRICMILL_WRITE_NATS_AUTH").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(shipped, want, "{} is stale: regenerate it", path.display());
    }
}
