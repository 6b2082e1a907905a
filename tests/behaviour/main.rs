//! The behaviour suite: every behaviour written once against a [`Deployment`] and run on every
//! backend — in memory (plain `cargo test`), on the standalone server with SQLite, and on the
//! three Lambda handlers on moto (`--features servers`, which `scripts/test.sh` turns on). On
//! AWS, each test also checks that every AWS call a function made is granted to it by
//! `infra/template.yaml`.

mod console;
mod credentials;
mod datadog;
mod deprovision;
mod entra;
mod expressions;
mod failures;
mod groups;
mod history;
mod ingress;
mod lifecycle;
mod ownership;
mod preview;
mod roles;
mod scope;
mod sweeps;

use scim_relay_tests::deployment::Backend;

/// Declares each behaviour once per backend: `memory::x`, `sqlite::x`, `aws::x`, so the runner's
/// closing line can be counted per backend.
macro_rules! on_every_backend {
    ($($module:ident :: $name:ident),* $(,)?) => {
        /// Every behaviour's name, once: what the README's stated counts are checked against.
        const BEHAVIOURS: &[&str] = &[$(stringify!($name)),*];

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
    history::a_users_history_tells_each_finished_trigger_by_id_or_email_without_values,
    console::status_shows_queue_dead_letters_breaker_last_sweep_subscription_invitations_and_holds,
    deprovision::a_scope_change_deactivating_50_of_200_deactivates_the_limit_and_holds_the_rest,
    deprovision::the_breaker_window_rolls_and_held_users_stay_held_until_decided,
    deprovision::a_deprovision_takes_a_slot_only_when_there_is_an_account_to_switch_off,
    deprovision::an_approval_lets_through_its_own_trigger_only,
    lifecycle::okta_lifecycle_creates_updates_deactivates_and_ignores_duplicates,
    lifecycle::an_unmappable_user_is_dead_lettered_with_its_reason_and_applied_once_redriven,
    lifecycle::a_user_deleted_from_the_directory_is_deactivated_from_recorded_state,
    lifecycle::the_owner_of_the_target_credential_is_never_deactivated,
    lifecycle::a_create_whose_answer_is_lost_is_looked_up_not_repeated,
    lifecycle::a_failed_patch_is_retried_until_it_lands,
    lifecycle::a_permanent_target_error_is_dead_lettered_with_its_reason,
    ownership::a_target_that_ignores_the_filter_never_gets_someone_elses_account_touched,
    ownership::protected_accounts_are_never_adopted_changed_or_deactivated,
    ownership::two_idp_users_with_one_email_never_share_or_switch_off_one_account,
    ownership::two_workers_racing_for_one_account_never_both_act_on_it,
    ownership::without_a_directory_an_event_never_adopts_or_switches_off_an_unrecorded_account,
    preview::plan_previews_every_user_and_writes_nothing_then_sync_applies_one,
    preview::the_calls_plan_predicts_are_the_calls_the_worker_makes,
    preview::plan_shows_the_deprovisions_the_breaker_would_hold,
    ingress::a_wrong_secret_is_401_and_enqueues_nothing,
    ingress::the_graph_handshake_echoes_the_token_as_plain_text,
    ingress::malformed_and_oversized_bodies_are_refused_without_enqueueing,
    ingress::with_a_directory_the_queue_holds_no_email_or_name,
    ingress::a_future_published_time_cannot_freeze_a_user_in_event_content_mode,
    entra::a_graph_notification_creates_disables_and_a_forged_one_changes_nothing,
    entra::byte_identical_graph_notifications_each_reach_the_target,
    entra::entra_soft_delete_deactivates_and_hard_delete_follows_the_policy,
    entra::sync_of_a_hard_deleted_user_queues_the_confirming_read_and_says_so,
    entra::a_hard_delete_seen_once_deactivates_and_deletes_only_when_a_later_read_confirms,
    entra::entra_scope_follows_group_membership,
    entra::a_lifecycle_event_for_a_subscription_graph_no_longer_has_is_parked_with_instructions,
    scope::okta_suspension_follows_the_suspend_policy,
    scope::a_staged_user_leaves_an_existing_account_alone_until_activated,
    scope::okta_scope_follows_the_app_assignment_and_groups_read_from_the_directory,
    scope::a_misspelt_scope_parks_triggers_and_deactivates_nobody,
    scope::the_attribute_map_sends_custom_idp_attributes,
    scope::a_user_in_scope_through_a_group_on_a_later_page_is_in_scope,
    failures::an_accepted_event_survives_a_restart_while_the_target_is_down,
    failures::a_rejected_target_credential_pauses_the_workers_and_keeps_the_messages,
    failures::the_failure_table_end_to_end,
    failures::an_account_created_but_not_recorded_is_still_reached_by_a_later_deletion,
    failures::a_rotated_queue_key_loses_nothing_signed_with_the_previous_one,
    failures::a_message_signed_with_a_key_not_yet_held_waits_for_it_and_a_forged_one_is_dead_lettered,
    failures::a_refused_directory_credential_pauses_the_workers_and_dead_letters_nothing,
    failures::an_idp_outage_is_waited_out_and_dead_letters_nothing,
    failures::an_idp_rate_limit_is_waited_out_and_dead_letters_nothing,
    failures::a_target_asking_to_wait_is_called_by_no_worker_until_then,
    credentials::a_service_app_and_a_certificate_read_the_directories_without_shared_secrets,
    credentials::a_service_app_that_requires_dpop_binds_its_token_to_a_key_of_the_relay,
    groups::okta_group_memberships_are_mirrored_and_a_deleted_group_is_made_again,
    groups::entra_group_memberships_are_mirrored_with_the_groups_display_names,
    groups::a_recreated_account_rejoins_its_groups,
    groups::a_group_failure_parks_the_groups_but_keeps_the_user_change,
    groups::a_leaver_leaves_every_mirrored_group_and_rejoins_when_reactivated,
    groups::a_renamed_group_stays_one_group_with_every_member,
    groups::a_group_losing_too_many_members_at_once_waits_for_an_operator,
    groups::a_leaver_leaves_every_mirrored_team_on_the_datadog_profile,
    groups::a_renamed_group_stays_one_team_on_the_datadog_profile,
    groups::a_team_losing_too_many_members_at_once_waits_on_the_datadog_profile,
    datadog::the_datadog_profile_against_a_target_that_behaves_as_datadog_documents,
    datadog::roles_are_sent_and_without_a_directory_an_older_event_changes_nothing,
    roles::three_groups_map_to_three_roles_on_the_datadog_profile,
    roles::three_groups_map_to_three_roles_on_a_generic_scim_target,
    expressions::attribute_expressions_compute_values_on_the_datadog_profile,
    expressions::attribute_expressions_compute_values_on_a_generic_scim_target,
    expressions::scoping_rules_admit_by_attribute_and_leavers_wait_for_the_breaker,
    expressions::scoping_rules_on_the_datadog_profile,
    sweeps::a_lost_okta_event_is_caught_up_by_the_sweeper,
    sweeps::nested_entra_groups_are_expanded_in_the_group_catch_up,
    sweeps::nested_entra_groups_are_expanded_on_the_datadog_profile,
    sweeps::a_full_pass_waits_out_okta_s_rate_limit_instead_of_starting_over,
    sweeps::a_pass_reads_okta_users_from_the_list_not_one_by_one,
    sweeps::a_full_pass_short_of_time_pauses_and_the_next_run_goes_on,
    sweeps::an_entra_full_pass_reads_users_from_the_delta_and_pauses_when_short_of_time,
    sweeps::a_listed_user_out_of_scope_is_read_afresh_and_its_membership_once,
    sweeps::a_missed_graph_lifecycle_event_catches_up_inside_the_worker,
    sweeps::expired_invitations_are_resent_until_accepted_and_reported_when_never_accepted,
    sweeps::without_the_datadog_api_key_expired_invitations_are_reported_unchecked,
    sweeps::graph_delta_reconciliation_pages_catches_removals_and_restarts_after_410,
    sweeps::a_read_that_breaks_off_or_comes_back_empty_keeps_its_position_and_deactivates_nobody,
    sweeps::okta_reconciliation_reads_users_changed_since_its_cursor,
    sweeps::the_relay_creates_renews_and_recreates_its_graph_subscription,
    sweeps::a_rotated_client_state_gets_a_new_subscription_and_the_old_one_is_deleted,
    sweeps::the_credential_probe_raises_the_alarm_and_pauses_the_workers_within_one_sweep,
    sweeps::target_users_the_relay_never_provisioned_are_reported_and_deactivated_only_if_asked,
    sweeps::joining_or_leaving_a_scoped_entra_group_is_caught_from_the_groups_delta_and_notifications,
    sweeps::a_lost_unassignment_or_deletion_in_okta_is_read_from_the_system_log,
    sweeps::the_drift_report_runs_once_an_interval_and_never_beside_a_full_pass,
);

/// Behaviours of the standalone deployment's claim loop, on memory and SQLite, that the Lambda
/// does not share by nature (outside the per-backend modules, so the suite's per-backend counts
/// stay equal).
mod standalone_claim_loop {
    use scim_relay_tests::deployment::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_a_fixed_target_key_resumes_work_within_seconds() {
        crate::failures::a_fixed_target_key_resumes_work_within_seconds_not_at_the_end_of_the_pause(
            Backend::Memory,
        )
        .await
    }

    #[cfg(feature = "servers")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_a_fixed_target_key_resumes_work_within_seconds() {
        crate::failures::a_fixed_target_key_resumes_work_within_seconds_not_at_the_end_of_the_pause(
            Backend::Sqlite,
        )
        .await
    }
}

/// The README tells a newcomer how many behaviours the suite runs and what `scripts/test.sh`
/// prints for them; both are checked here against the suite itself, so they cannot drift again.
#[test]
fn the_readme_states_the_suites_own_counts() {
    let readme = include_str!("../../README.md");
    let n = BEHAVIOURS.len();
    let covers = format!("({n} behaviours on each backend)");
    assert!(
        readme.contains(&covers),
        "README.md should say `{covers}` where it lists what the suite covers"
    );
    // The sample closing line, as the test script prints it (the README may wrap it).
    let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let sample = format!("behaviour suite: memory {n} passed, sqlite {n} passed, aws {n} passed");
    assert!(
        flat.contains(&sample),
        "README.md should show the test script's line `{sample}`"
    );
    let mut unique = BEHAVIOURS.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), n, "each behaviour is declared once");
}

/// Every `.rs` file below `dir`.
fn rust_sources(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// docs/ARCHITECTURE.md's module map names every source file of the core and the functions,
/// and nothing that is gone: the map of what is, kept honest.
#[test]
fn the_architecture_map_places_every_module() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let map = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE");
    let mut files = Vec::new();
    for crate_src in [
        "core/src",
        "functions/inbound/src",
        "functions/worker/src",
        "functions/sweeper/src",
        "functions/server/src",
    ] {
        rust_sources(&root.join(crate_src), &mut files);
    }
    let relative: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(&root)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    let missing: Vec<&String> = relative
        .iter()
        .filter(|f| !map.contains(&format!("`{f}`")))
        .collect();
    assert!(missing.is_empty(), "not in the module map: {missing:?}");
    let listed: Vec<&str> = map
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|p| p.ends_with(".rs"))
        .collect();
    let gone: Vec<&&str> = listed
        .iter()
        .filter(|p| !relative.iter().any(|f| f == *p))
        .collect();
    assert!(
        gone.is_empty(),
        "in the module map, not in the tree: {gone:?}"
    );
    assert!(listed.len() >= relative.len());
}

/// The core's modules import one another without a cycle: the domain types live in `model`,
/// each port depends on the model and never on another port that depends back on it. Read off
/// the sources (`crate::…` paths, test modules left out), so a new edge that closes a loop
/// fails here with the loop named.
#[test]
fn the_core_modules_import_no_cycle() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/src");
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    let mut files = Vec::new();
    rust_sources(&root, &mut files);
    for file in files {
        let relative = file.strip_prefix(&root).expect("under core/src");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|m| m.trim_end_matches(".rs").to_string())
            .expect("a module");
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file");
        // Unit tests may reach anywhere; the module's own code may not.
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&text);
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|item| item.trim().split("::").next())
                    .collect(),
                None => vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or_default()],
            };
            for name in names.into_iter().filter(|n| !n.is_empty() && *n != module) {
                // Items of lib.rs itself (the HTTP client helpers) are no module.
                if root.join(format!("{name}.rs")).exists() || root.join(name).is_dir() {
                    edges
                        .entry(module.clone())
                        .or_default()
                        .insert(name.to_string());
                }
            }
        }
    }
    // Depth-first: a module met again while still on the path closes a loop.
    fn visit(
        module: &str,
        edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
        loops: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|m| m == module) {
            loops.push(format!("{} -> {module}", path[at..].join(" -> ")));
            return;
        }
        if !done.insert(module.to_string()) {
            return;
        }
        path.push(module.to_string());
        for next in edges.get(module).into_iter().flatten() {
            visit(next, edges, path, done, loops);
        }
        path.pop();
    }
    let mut loops = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    for module in edges.keys() {
        visit(module, &edges, &mut Vec::new(), &mut done, &mut loops);
    }
    assert!(
        edges.get("model").is_none_or(|e| e.is_empty()),
        "model depends on {:?}",
        edges.get("model")
    );
    assert!(loops.is_empty(), "import cycles in core: {loops:#?}");
}
