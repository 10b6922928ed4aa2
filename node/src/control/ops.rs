//! The operations of the control API, each declared once: its request (the struct, sent as JSON
//! with its name in `op`), its reply type, and what it does to the city ([`Operation::run`]).
//! The daemon runs them for the CLI over its socket (`control/server.rs`); without a daemon the
//! CLI runs the same `run` on the city it opened ([`crate::Client::call`]).

use intercity_protocol::entry::DocId;
use intercity_protocol::identity::CityId;
use intercity_protocol::record::{Kind, Member, Record, Role};
use intercity_protocol::succession::Guardians;
use serde::{Deserialize, Serialize};

use super::{Context, Operation};
use crate::catalog::{Found, Query};
use crate::city::{
    Access, CalendarFeed, City, CityError, HistoryItem, ImportResult, KeyInfo, RecoveryInfo,
    StaffMember, signed_by,
};
use crate::exchange::{Exported, Imported};
use crate::net::NetStatus;
use crate::roster::{Federation, IssuedInvitation, Peer, PendingJoin, RosterEntry};
use crate::store::RecordSummary;

/// Declares an operation: `op!(Name { fields } => Reply [, roster = true] [, net = true];
/// |op, city, ctx| body)`, where `body` runs it (`op` is the request).
macro_rules! op {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }
        => $reply:ty $(, roster = $roster:expr)? $(, net = $net:expr)?;
        |$op:ident, $city:ident, $ctx:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
        }

        impl Operation for $name {
            type Reply = $reply;
            $(const ROSTER: bool = $roster;)?
            $(const NET: bool = $net;)?
            #[allow(unused_variables)]
            fn run(self, $city: &City, $ctx: &Context) -> Result<$reply, CityError> {
                let $op = self;
                $body
            }
        }
    };
}

op!(
    /// The city profile.
    Profile {} => crate::city::Profile; |op, city, ctx| Ok(city.profile().clone())
);

op!(
    /// The city's keys (`intercity key show`).
    Keys {} => KeyInfo; |op, city, ctx| city.key_info()
);

op!(
    /// The city's guardians, as its current key named them last.
    GuardiansOf {} => Option<Guardians>; |op, city, ctx| city.guardians()
);

op!(
    /// Names the city's guardians (§15.6 of docs/protocol.md).
    Designate {
        /// How many must vouch.
        threshold: u8,
        /// The guardians (city ids).
        guardians: Vec<CityId>,
    } => Guardians; |op, city, ctx| city.designate_guardians(op.threshold, op.guardians)
);

op!(
    /// As a guardian, starts the recovery of another city to its new key.
    RecoveryStart {
        /// The city recovered.
        city: CityId,
        /// Its new key.
        new: CityId,
        /// The key recovered (default: the city's current key).
        old: Option<CityId>,
    } => RecoveryInfo; |op, city, ctx| city.recovery_start(op.city, op.new, op.old)
);

op!(
    /// A recovery token, with what this node holds beside it.
    RecoveryCheck {
        /// The recovery token.
        token: String,
    } => RecoveryInfo; |op, city, ctx| city.recovery_check(&op.token)
);

op!(
    /// As a guardian, vouches for a recovery.
    RecoveryVouch {
        /// The recovery token.
        token: String,
    } => RecoveryInfo; |op, city, ctx| city.recovery_vouch(&op.token)
);

op!(
    /// A record.
    Get {
        /// The record.
        id: DocId,
    } => Record; |op, city, ctx| city.record(op.id)
);

op!(
    /// A record and the heads (hex) of its document: the base of a later [`Edit`].
    Base {
        /// The record.
        id: DocId,
    } => (Record, Vec<String>); |op, city, ctx| {
        let (record, heads) = city.record_and_heads(op.id)?;
        Ok((record, heads.iter().map(ToString::to_string).collect()))
    }
);

op!(
    /// Resolves an id prefix (or a whole id), of one kind if given.
    Resolve {
        /// The prefix.
        prefix: String,
        /// The kind expected.
        kind: Option<Kind>,
    } => DocId; |op, city, ctx| match op.kind {
        Some(k) => city.resolve_kind(&op.prefix, k),
        None => city.resolve(&op.prefix),
    }
);

op!(
    /// The listing index.
    List {
        /// Only records of this kind.
        kind: Option<Kind>,
    } => Vec<RecordSummary>; |op, city, ctx| city.list(op.kind)
);

op!(
    /// A record's history.
    History {
        /// The record.
        id: DocId,
    } => Vec<HistoryItem>; |op, city, ctx| city.history(op.id)
);

op!(
    /// Creates a record.
    Create {
        /// The record.
        record: Record,
        /// The change message.
        message: String,
    } => DocId; |op, city, ctx| {
        city.create(&op.record, &signed_by(&op.message, ctx.person.as_deref()))
    }
);

op!(
    /// Replaces a record's content with this, as one change built on `base` (the heads, hex,
    /// of the version the new content was made from: changes that arrived since are kept;
    /// empty: the current version).
    Edit {
        /// The record.
        id: DocId,
        /// Its new content.
        record: Record,
        /// The change message.
        message: String,
        /// The version edited.
        #[serde(default)]
        base: Vec<String>,
    } => Record; |op, city, ctx| {
        // The federation's record is changed by the operator's federation commands only.
        if ctx.person.is_some() && city.federation_id()? == Some(op.id) {
            return Err(CityError::Refused(
                "the federation's record is for the city's operator (`intercity federation`)".into(),
            ));
        }
        let message = signed_by(&op.message, ctx.person.as_deref());
        let target = op.record;
        let replace = |r: &mut Record| {
            *r = target;
            Ok(())
        };
        if op.base.is_empty() {
            city.edit(op.id, &message, replace)
        } else {
            let base = op
                .base
                .iter()
                .map(|h| h.parse::<automerge::ChangeHash>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CityError::Invalid(format!("bad base heads: {e}")))?;
            city.edit_from(op.id, &base, &message, replace)
        }
    }
);

op!(
    /// The network's status: the daemon's, or what the store holds when no daemon runs.
    Status {} => NetStatus, net = true; |op, city, ctx| match &ctx.status {
        Some(status) => Ok(status.clone()),
        None => NetStatus::offline(city),
    }
);

op!(
    /// The roster and the federation's members, with why each is trusted.
    Roster {} => Vec<Peer>; |op, city, ctx| city.peers()
);

op!(
    /// The federation this city follows, with its record if held.
    FederationShow {} => Option<Federation>; |op, city, ctx| city.federation()
);

op!(
    /// Starts a federation with this city as its first steward.
    FederationCreate {
        /// Its name.
        name: String,
        /// What it is for.
        charter: String,
    } => DocId, roster = true; |op, city, ctx| city.federation_create(&op.name, &op.charter)
);

op!(
    /// Stops following the federation.
    FederationLeave {} => DocId, roster = true; |op, city, ctx| city.federation_leave()
);

op!(
    /// Admits a city into the federation, or changes its name or role (stewards only).
    FederationSet {
        /// The city: its id, or its name in the federation or the roster.
        city: String,
        /// Its display name (empty: keep the one it has).
        name: String,
        /// Its role.
        role: Role,
    } => (CityId, Member), roster = true; |op, city, ctx| {
        city.stewarded()?;
        let id = city.federation_city(&op.city)?;
        Ok((id, city.federation_set(id, &op.name, op.role)?))
    }
);

op!(
    /// Removes a city from the federation (stewards only).
    FederationRemove {
        /// The city: its id, or its name.
        city: String,
    } => (CityId, Member), roster = true; |op, city, ctx| {
        city.stewarded()?;
        let id = city.federation_city(&op.city)?;
        Ok((id, city.federation_remove(&id)?))
    }
);

op!(
    /// Adds a city to the roster.
    RosterAdd {
        /// The city.
        id: CityId,
        /// Its display name.
        name: String,
        /// Where to reach it.
        addrs: Vec<String>,
    } => RosterEntry, roster = true; |op, city, ctx| city.roster_add(op.id, &op.name, &op.addrs)
);

op!(
    /// Removes a city from the roster.
    RosterRemove {
        /// The city.
        id: CityId,
    } => (), roster = true; |op, city, ctx| city.roster_remove(&op.id)
);

op!(
    /// Blocks a city.
    RosterBlock {
        /// The city.
        id: CityId,
    } => RosterEntry, roster = true; |op, city, ctx| city.roster_block(&op.id)
);

op!(
    /// Unblocks a city.
    RosterUnblock {
        /// The city.
        id: CityId,
    } => RosterEntry, roster = true; |op, city, ctx| city.roster_unblock(&op.id)
);

op!(
    /// Creates an invitation; with no addresses given, through the daemon, it carries the
    /// daemon's listen addresses (but the unspecified ones).
    Invite {
        /// The one city that may redeem it.
        invitee: Option<CityId>,
        /// A working group the joining city becomes a member of.
        group: Option<DocId>,
        /// Addresses to put in the token.
        #[serde(default)]
        addrs: Vec<String>,
        /// Joins it admits.
        uses: u32,
    } => String, roster = true, net = true; |op, city, ctx| {
        let addrs = match &ctx.status {
            Some(status) if op.addrs.is_empty() => status
                .listen
                .iter()
                .filter(|a| !a.contains("/0.0.0.0/"))
                .cloned()
                .collect(),
            _ => op.addrs,
        };
        city.invite(op.invitee, addrs, op.group, op.uses)
    }
);

op!(
    /// The invitations out.
    Invitations {} => Vec<IssuedInvitation>; |op, city, ctx| city.invitations()
);

op!(
    /// Revokes an invitation.
    Revoke {
        /// Its code, or a prefix of it.
        code: String,
    } => IssuedInvitation, roster = true; |op, city, ctx| city.revoke_invitation(&op.code)
);

op!(
    /// The joins waiting for approval.
    Joins {} => Vec<PendingJoin>; |op, city, ctx| city.pending_joins()
);

op!(
    /// Approves a waiting join.
    Approve {
        /// The joining city.
        id: CityId,
    } => RosterEntry, roster = true; |op, city, ctx| city.approve_join(&op.id)
);

op!(
    /// Denies a waiting join.
    Deny {
        /// The joining city.
        id: CityId,
    } => PendingJoin, roster = true; |op, city, ctx| city.deny_join(&op.id)
);

op!(
    /// Accepts an invitation.
    Accept {
        /// The token.
        token: String,
    } => RosterEntry, roster = true; |op, city, ctx| city.accept_invitation(&op.token)
);

op!(
    /// A catalog query (a search or a filtered listing).
    Search {
        /// The query.
        query: Query,
    } => Found; |op, city, ctx| city.query(&op.query)
);

op!(
    /// Backs the city up into a new directory (see [`City::backup`]).
    Backup {
        /// The directory (absolute: the daemon writes it).
        dir: std::path::PathBuf,
    } => crate::city::BackupInfo; |op, city, ctx| city.backup(&op.dir)
);

op!(
    /// Rebuilds the catalog; gives the number of units indexed.
    Reindex {} => usize; |op, city, ctx| city.reindex()
);

op!(
    /// Imports records (see [`City::import`]).
    Import {
        /// The records.
        items: Vec<Imported>,
        /// Checks only.
        dry_run: bool,
    } => Vec<ImportResult>; |op, city, ctx| Ok(city.import_by(op.items, op.dry_run, ctx.person.as_deref()))
);

op!(
    /// Ends a bulk import (flush, compact).
    FinishImport {} => (); |op, city, ctx| city.finish_import()
);

op!(
    /// Records with their provenance.
    Export {
        /// The records' ids.
        ids: Vec<String>,
    } => Vec<Exported>; |op, city, ctx| city.export(&op.ids)
);

op!(
    /// A group's calendar feed, made on first use (or under a new secret when `renew`).
    CalendarFeedOf {
        /// The group.
        group: DocId,
        /// Replace the secret: the old URL stops working.
        renew: bool,
    } => CalendarFeed; |op, city, ctx| city.calendar_feed(op.group, op.renew)
);

op!(
    /// Every calendar feed.
    CalendarFeeds {} => Vec<CalendarFeed>; |op, city, ctx| city.calendar_feeds()
);

op!(
    /// Withdraws a group's calendar feed.
    CalendarRevoke {
        /// The group.
        group: DocId,
    } => (); |op, city, ctx| city.calendar_revoke(op.group)
);

op!(
    /// Lets a person use this city's node as staff: a Unix user of the staff group on the
    /// server, or a staff key from another machine.
    StaffAdd {
        /// Their name, as their changes show it.
        name: String,
        /// How they reach the node.
        access: Access,
    } => StaffMember, roster = true; |op, city, ctx| city.staff_add(&op.name, op.access)
);

op!(
    /// Ends a staff member's access (by name, Unix user or key).
    StaffRemove {
        /// Who.
        who: String,
    } => StaffMember, roster = true; |op, city, ctx| city.staff_remove(&op.who)
);

op!(
    /// This city's staff.
    StaffList {} => Vec<StaffMember>; |op, city, ctx| city.staff()
);
