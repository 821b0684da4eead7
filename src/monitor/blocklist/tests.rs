use std::sync::Arc;

use super::*;
use crate::policy::ScopeSet;
use crate::token::Confirmation;

const CUTOFF: i64 = 1_800_000_000;
const LONG: Duration = Duration::from_secs(600);

fn token(iat: Option<i64>) -> VerifiedToken {
    VerifiedToken {
        issuer: Arc::from("https://as"),
        subject: Subject::parse("u-1"),
        client_id: ClientId::parse("app-1"),
        jti: Jti::parse("t-1"),
        patient: None,
        scopes: ScopeSet::default(),
        expires_at: CUTOFF + 300,
        issued_at: iat,
        confirmation: Confirmation::None,
    }
}

fn client() -> BlockKey {
    BlockKey::Client(ClientId::parse("app-1").unwrap())
}

/// Writes blocks or cut-offs into a fresh list.
type Setup = fn(&BlockList);

/// What the list answers for `token` after `setup` wrote it.
#[track_caller]
fn check(setup: Setup, token: &VerifiedToken, expected: Result<(), BlockFault>) {
    let list = BlockList::new(100, LONG);
    setup(&list);
    assert_eq!(list.check_token(token), expected);
}

#[test]
fn blocks_and_cutoffs_refuse_what_they_name() {
    let other = BlockKey::Client(ClientId::parse("app-2").unwrap());
    let cases: Vec<(Setup, Option<i64>, Result<(), BlockFault>)> = vec![
        (|_| {}, Some(CUTOFF), Ok(())),
        (
            |l| l.block(client(), LONG),
            Some(CUTOFF),
            Err(BlockFault::Blocked),
        ),
        (
            |l| l.block(BlockKey::Subject(Subject::parse("u-1").unwrap()), LONG),
            Some(CUTOFF),
            Err(BlockFault::Blocked),
        ),
        (
            |l| l.block(BlockKey::Token(Jti::parse("t-1").unwrap()), LONG),
            Some(CUTOFF),
            Err(BlockFault::Blocked),
        ),
        // A revoke action's token is refused by its jti, and only that token.
        (
            |l| l.revoke(Jti::parse("t-1").unwrap()),
            Some(CUTOFF),
            Err(BlockFault::Revoked),
        ),
        (
            |l| l.revoke(Jti::parse("t-2").unwrap()),
            Some(CUTOFF),
            Ok(()),
        ),
        // P-05: before the cut-off refused, at or after it allowed, no `iat` refused.
        (
            |l| l.reauthenticate(client(), CUTOFF),
            Some(CUTOFF - 1),
            Err(BlockFault::ReauthenticationRequired),
        ),
        (|l| l.reauthenticate(client(), CUTOFF), Some(CUTOFF), Ok(())),
        (
            |l| l.reauthenticate(client(), CUTOFF),
            None,
            Err(BlockFault::ReauthenticationRequired),
        ),
        // A later cut-off is never replaced by an earlier one.
        (
            |l| {
                l.reauthenticate(client(), CUTOFF + 10);
                l.reauthenticate(client(), CUTOFF);
            },
            Some(CUTOFF + 5),
            Err(BlockFault::ReauthenticationRequired),
        ),
    ];
    for (setup, iat, expected) in cases {
        check(setup, &token(iat), expected);
    }
    let list = BlockList::new(100, LONG);
    list.block(other, LONG);
    assert_eq!(list.check_token(&token(Some(CUTOFF))), Ok(()));
}

#[test]
fn addresses_are_blocked_alone() {
    let list = BlockList::new(100, LONG);
    let blocked = IpAddr::from([192, 0, 2, 1]);
    list.block(BlockKey::Address(PeerNetwork::of(blocked)), LONG);
    assert_eq!(list.check_address(blocked), Err(BlockFault::Blocked));
    assert_eq!(list.check_address(IpAddr::from([192, 0, 2, 2])), Ok(()));
    assert_eq!(list.check_token(&token(Some(CUTOFF))), Ok(()));
}

#[test]
fn blocks_end_when_their_period_does() {
    let list = BlockList::new(100, LONG);
    list.block(client(), Duration::from_millis(50));
    assert_eq!(list.check_token(&token(None)), Err(BlockFault::Blocked));
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(list.check_token(&token(Some(CUTOFF))), Ok(()));
}

#[test]
fn distinct_keys_never_grow_the_list_past_its_bound() {
    let list = BlockList::new(50, LONG);
    for n in 0..5_000u32 {
        list.block(
            BlockKey::Address(PeerNetwork::of(IpAddr::from(n.to_be_bytes()))),
            LONG,
        );
    }
    assert!(list.len() <= 50, "{} entries", list.len());
}

/// A full list still takes every new block: the newest block is in force however many came
/// before it (an admission policy that turned away new entries would let the latest attacker
/// through while the list is full).
#[test]
fn a_full_list_always_takes_the_newest_block() {
    let list = BlockList::new(50, LONG);
    for n in 0..2_000u32 {
        let address = IpAddr::from(n.to_be_bytes());
        list.block(BlockKey::Address(PeerNetwork::of(address)), LONG);
        list.blocks.run_pending_tasks();
        assert_eq!(list.check_address(address), Err(BlockFault::Blocked), "{n}");
    }
}
