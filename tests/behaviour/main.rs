//! The behaviour suite: every behaviour written once against a [`Deployment`] and run on every
//! backend — in memory (plain `cargo test`), on the standalone server with SQLite, and on the
//! three Lambda handlers on moto (`--features servers`, which `scripts/test.sh` turns on). On
//! AWS, each test also checks that every AWS call a function made is granted to it by
//! `infra/template.yaml`.

mod groups;
mod lifecycle;
mod sweeps;

use scim_relay_tests::deployment::Backend;

/// Declares each behaviour once per backend: `memory::x`, `sqlite::x`, `aws::x`, so the runner's
/// closing line can be counted per backend.
macro_rules! on_every_backend {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::$module::$name(crate::Backend::Memory).await
                }
            )*
        }
        #[cfg(feature = "servers")]
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::$module::$name(crate::Backend::Sqlite).await
                }
            )*
        }
        #[cfg(feature = "servers")]
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::$module::$name(crate::Backend::Aws).await
                }
            )*
        }
    };
}

on_every_backend!(
    lifecycle::okta_lifecycle_creates_updates_deactivates_and_ignores_duplicates,
    lifecycle::a_wrong_secret_is_401_and_enqueues_nothing,
    lifecycle::a_graph_notification_creates_the_user,
    lifecycle::an_unmappable_user_is_dead_lettered_with_its_reason,
    lifecycle::a_user_deleted_from_the_directory_is_deactivated_from_recorded_state,
    lifecycle::the_owner_of_the_target_credential_is_never_deactivated,
    lifecycle::a_create_whose_answer_is_lost_is_looked_up_not_repeated,
    lifecycle::a_failed_patch_is_retried_until_it_lands,
    lifecycle::a_permanent_target_error_is_dead_lettered_with_its_reason,
    groups::okta_group_memberships_are_mirrored_and_a_deleted_group_is_made_again,
    sweeps::a_lost_okta_event_is_caught_up_by_the_sweeper,
    sweeps::a_missed_graph_lifecycle_event_catches_up_inside_the_worker,
);
