//! Geo commands (Redis 7.0): GEOADD, GEOPOS, GEODIST, GEOHASH, GEOSEARCH,
//! GEOSEARCHSTORE, GEORADIUS, GEORADIUSBYMEMBER and the `_RO` variants.
//!
//! Positions live in sorted sets exactly as in Redis: the score is the
//! 52-bit geohash ([`crate::types::geohash`]), so every sorted-set command
//! works on geo keys and vice versa. Parsing, error order, search, sorting
//! and reply formats follow `georadiusGeneric` in Redis's `geo.c`.
//!
//! Searches run on the shard that owns the source key. The commands that
//! may store (GEORADIUS, GEORADIUSBYMEMBER with STORE/STOREDIST, and
//! GEOSEARCHSTORE) run in one hop when every key involved is on one shard;
//! otherwise they lock the source and destination keys, search on the
//! source's shard and write the result on the destination's, atomically.

use super::zset::{limits, read_zset, string2d, write_zset};
use super::{CommandSpec, Ctx, Handler, arg_i64, err, flags::*, keys};
use crate::reply::Reply;
use crate::shard::value::{SmallBytes, Value};
use crate::transaction::Client;
use crate::types::geohash::{self, GeoPoint, Shape, ShapeKind};
use crate::types::zset::{AddFlags, AddOutcome, ScoreRange, ZSetValue};
use bytes::Bytes;
use futures::future::LocalBoxFuture;

const R: &[&str] = &["read", "geo", "slow"];
const W: &[&str] = &["write", "geo", "slow"];
const G: &str = "geo";

/// The geo family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "geoadd",
        -5,
        WRITE | DENYOOM,
        keys(1, 1, 1),
        G,
        "3.2.0",
        "Add one or more geospatial items in the geospatial index represented using a sorted set",
        Handler::Keyed(geoadd),
    )
    .acl(W),
    CommandSpec::new(
        "geodist",
        -4,
        READONLY,
        keys(1, 1, 1),
        G,
        "3.2.0",
        "Returns the distance between two members of a geospatial index",
        Handler::Keyed(geodist),
    )
    .acl(R),
    CommandSpec::new(
        "geohash",
        -2,
        READONLY,
        keys(1, 1, 1),
        G,
        "3.2.0",
        "Returns members of a geospatial index as standard geohash strings",
        Handler::Keyed(geohash_cmd),
    )
    .acl(R),
    CommandSpec::new(
        "geopos",
        -2,
        READONLY,
        keys(1, 1, 1),
        G,
        "3.2.0",
        "Returns longitude and latitude of members of a geospatial index",
        Handler::Keyed(geopos),
    )
    .acl(R),
    CommandSpec::new(
        "georadius",
        -6,
        WRITE | DENYOOM | MOVABLEKEYS,
        keys(1, 1, 1),
        G,
        "3.2.0",
        "Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a point",
        Handler::Async(georadius),
    )
    .keys_with(georadius_keys)
    .acl(W),
    CommandSpec::new(
        "georadius_ro",
        -6,
        READONLY,
        keys(1, 1, 1),
        G,
        "3.2.10",
        "A read-only variant for GEORADIUS",
        Handler::Keyed(georadius_ro),
    )
    .acl(R),
    CommandSpec::new(
        "georadiusbymember",
        -5,
        WRITE | DENYOOM | MOVABLEKEYS,
        keys(1, 1, 1),
        G,
        "3.2.0",
        "Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a member",
        Handler::Async(georadiusbymember),
    )
    .keys_with(georadiusbymember_keys)
    .acl(W),
    CommandSpec::new(
        "georadiusbymember_ro",
        -5,
        READONLY,
        keys(1, 1, 1),
        G,
        "3.2.10",
        "A read-only variant for GEORADIUSBYMEMBER",
        Handler::Keyed(georadiusbymember_ro),
    )
    .acl(R),
    CommandSpec::new(
        "geosearch",
        -7,
        READONLY,
        keys(1, 1, 1),
        G,
        "6.2.0",
        "Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle.",
        Handler::Keyed(geosearch),
    )
    .acl(R),
    CommandSpec::new(
        "geosearchstore",
        -8,
        WRITE | DENYOOM,
        keys(1, 2, 1),
        G,
        "6.2.0",
        "Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle, and store the result in another key.",
        Handler::Async(geosearchstore),
    )
    .acl(W),
];

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

// ---------------------------------------------------------------------------
// Argument helpers
// ---------------------------------------------------------------------------

/// The bytes C code sees in an argument: up to the first NUL (Redis
/// compares keywords and units with `strcasecmp`).
fn cstr(arg: &[u8]) -> &[u8] {
    match memchr::memchr(0, arg) {
        Some(i) => &arg[..i],
        None => arg,
    }
}

/// Case-insensitive keyword match with C string semantics.
fn kw(arg: &[u8], word: &str) -> bool {
    cstr(arg).eq_ignore_ascii_case(word.as_bytes())
}

/// `getDoubleFromObjectOrReply` with an optional custom message.
fn arg_double(b: &[u8], msg: Option<&'static str>) -> Result<f64, Reply> {
    string2d(b).ok_or(match msg {
        Some(m) => Reply::StaticError(m),
        None => err::NOT_FLOAT,
    })
}

/// C's `printf` with one double argument.
fn cfmt(fmt: &std::ffi::CStr, v: f64) -> String {
    let mut buf = vec![0u8; 512];
    loop {
        // SAFETY: `buf` has `buf.len()` writable bytes and `fmt` takes
        // exactly one double.
        let n = unsafe {
            libc::snprintf(
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
                fmt.as_ptr(),
                v,
            )
        };
        let n = n.max(0) as usize;
        if n < buf.len() {
            buf.truncate(n);
            return String::from_utf8_lossy(&buf).into_owned();
        }
        buf.resize(n + 1, 0);
    }
}

/// `extractLongLatOrReply`: a longitude and a latitude within the limits.
fn arg_lonlat(lon: &[u8], lat: &[u8]) -> Result<(f64, f64), Reply> {
    let x = arg_double(lon, None)?;
    let y = arg_double(lat, None)?;
    if !geohash::valid_lonlat(x, y) {
        return Err(Reply::Error(format!(
            "ERR invalid longitude,latitude pair {},{}",
            cfmt(c"%f", x),
            cfmt(c"%f", y)
        )));
    }
    Ok((x, y))
}

/// `extractUnitOrReply`: meters per unit.
fn arg_unit(u: &[u8]) -> Result<f64, Reply> {
    let u = cstr(u);
    if u.eq_ignore_ascii_case(b"m") {
        Ok(1.0)
    } else if u.eq_ignore_ascii_case(b"km") {
        Ok(1000.0)
    } else if u.eq_ignore_ascii_case(b"ft") {
        Ok(0.3048)
    } else if u.eq_ignore_ascii_case(b"mi") {
        Ok(1609.34)
    } else {
        Err(Reply::StaticError(
            "ERR unsupported unit provided. please use M, KM, FT, MI",
        ))
    }
}

/// `extractDistanceOrReply`: (radius, meters per unit).
fn arg_distance(r: &[u8], unit: &[u8]) -> Result<(f64, f64), Reply> {
    let d = arg_double(r, Some("ERR need numeric radius"))?;
    if d < 0.0 {
        return Err(Reply::StaticError("ERR radius cannot be negative"));
    }
    Ok((d, arg_unit(unit)?))
}

/// `extractBoxOrReply`: (width, height, meters per unit).
fn arg_box(w: &[u8], h: &[u8], unit: &[u8]) -> Result<(f64, f64, f64), Reply> {
    let w = arg_double(w, Some("ERR need numeric width"))?;
    let h = arg_double(h, Some("ERR need numeric height"))?;
    if h < 0.0 || w < 0.0 {
        return Err(Reply::StaticError("ERR height or width cannot be negative"));
    }
    Ok((w, h, arg_unit(unit)?))
}

// ---------------------------------------------------------------------------
// Reply helpers
// ---------------------------------------------------------------------------

/// `addReplyDoubleDistance`: `%.4f` as a bulk string.
fn distance_reply(d: f64) -> Reply {
    Reply::Bulk(Bytes::from(cfmt(c"%.4f", d)))
}

/// Redis's `ld2string(..., LD_STR_HUMAN)` of a double: `%.17Lf` without
/// trailing zeros (the long double holds the double's exact value, so
/// `%.17f` prints the same digits).
fn human(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let mut s = cfmt(c"%.17f", d);
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

/// `addReplyHumanLongDouble`: a bulk string in RESP2, a double in RESP3.
///
/// Redis's RESP3 reply is `,<human digits>`; [`Reply`] has no variant for a
/// double with preformatted digits yet, so RESP3 gets `Reply::Double`
/// (same type, `%.17g` digits) until one exists.
fn coord_reply(d: f64, _resp3: bool) -> Reply {
    Reply::DoubleText(human(d))
}

/// `[longitude, latitude]`.
fn position_reply(lon: f64, lat: f64, resp3: bool) -> Reply {
    Reply::Array(vec![coord_reply(lon, resp3), coord_reply(lat, resp3)])
}

// ---------------------------------------------------------------------------
// GEOADD, GEOPOS, GEODIST, GEOHASH
// ---------------------------------------------------------------------------

/// GEOADD key [NX|XX] [CH] longitude latitude member [...]: ZADD with the
/// geohash scores.
fn geoadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (mut nx, mut xx, mut ch) = (false, false, false);
    let mut idx = 2;
    while idx < args.len() {
        let a = &args[idx];
        if kw(a, "nx") {
            nx = true;
        } else if kw(a, "xx") {
            xx = true;
        } else if kw(a, "ch") {
            ch = true;
        } else {
            break;
        }
        idx += 1;
    }
    let rest = args.len() - idx;
    if !rest.is_multiple_of(3) || (xx && nx) || rest == 0 {
        return err::SYNTAX;
    }
    let mut items = Vec::with_capacity(rest / 3);
    for t in args[idx..].chunks(3) {
        let (lon, lat) = tri!(arg_lonlat(&t[0], &t[1]));
        let score = geohash::score_of(lon, lat).unwrap_or(0.0);
        items.push((score, &t[2]));
    }
    let f = AddFlags {
        nx,
        xx,
        ..Default::default()
    };
    let lim = limits(ctx);
    let key = &args[1];
    let (mut added, mut updated) = (0i64, 0i64);
    let mut apply = |z: &mut ZSetValue| {
        for (score, member) in &items {
            match z.add(member, *score, f, lim) {
                Ok(AddOutcome::Added(_)) => added += 1,
                Ok(AddOutcome::Updated(_)) => updated += 1,
                _ => {}
            }
        }
    };
    match tri!(write_zset(ctx, key)) {
        Some(z) => apply(z),
        None if xx => {}
        None => {
            let mut z = ZSetValue::new();
            apply(&mut z);
            if !z.is_empty() {
                let now = ctx.now_ms;
                ctx.db().set(key, Value::ZSet(Box::new(z)), 0, now);
            }
        }
    }
    Reply::Int(if ch { added + updated } else { added })
}

/// GEOPOS key [member ...].
fn geopos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let resp3 = ctx.resp3;
    let z = tri!(read_zset(ctx, &args[1]));
    Reply::Array(
        args[2..]
            .iter()
            .map(|m| {
                match z
                    .as_ref()
                    .and_then(|z| z.score(m))
                    .and_then(geohash::decode_score)
                {
                    Some((lon, lat)) => position_reply(lon, lat, resp3),
                    None => Reply::NilArray,
                }
            })
            .collect(),
    )
}

/// GEODIST key member1 member2 [unit].
fn geodist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let to_meter = match args.len() {
        5 => tri!(arg_unit(&args[4])),
        n if n > 5 => return err::SYNTAX,
        _ => 1.0,
    };
    let Some(z) = tri!(read_zset(ctx, &args[1])) else {
        return Reply::Nil;
    };
    let (Some(s1), Some(s2)) = (z.score(&args[2]), z.score(&args[3])) else {
        return Reply::Nil;
    };
    match (geohash::decode_score(s1), geohash::decode_score(s2)) {
        (Some((x1, y1)), Some((x2, y2))) => {
            distance_reply(geohash::distance(x1, y1, x2, y2) / to_meter)
        }
        _ => Reply::Nil,
    }
}

/// GEOHASH key [member ...].
fn geohash_cmd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let z = tri!(read_zset(ctx, &args[1]));
    Reply::Array(
        args[2..]
            .iter()
            .map(|m| {
                match z
                    .as_ref()
                    .and_then(|z| z.score(m))
                    .and_then(geohash::standard_geohash)
                {
                    Some(h) => Reply::bulk(&h),
                    None => Reply::Nil,
                }
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------
// Searches
// ---------------------------------------------------------------------------

/// Which search command runs (Redis's `RADIUS_*` / `GEOSEARCH*` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// GEORADIUS / GEORADIUS_RO.
    Coords { nostore: bool },
    /// GEORADIUSBYMEMBER / GEORADIUSBYMEMBER_RO.
    Member { nostore: bool },
    /// GEOSEARCH.
    Search,
    /// GEOSEARCHSTORE.
    SearchStore,
}

impl Kind {
    fn src_index(self) -> usize {
        if self == Kind::SearchStore { 2 } else { 1 }
    }

    fn is_search(self) -> bool {
        matches!(self, Kind::Search | Kind::SearchStore)
    }

    fn nostore(self) -> bool {
        matches!(
            self,
            Kind::Coords { nostore: true } | Kind::Member { nostore: true }
        )
    }
}

/// What a search produced: a reply, or entries to store at `dst` (sorted
/// by score then member; empty means delete `dst`).
enum Outcome {
    Reply(Reply),
    Store {
        dst: Bytes,
        entries: Vec<(SmallBytes, f64)>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    None,
    Asc,
    Desc,
}

/// The position of `member` in `z` (`longLatFromMember`).
fn member_pos(z: &ZSetValue, member: &[u8]) -> Result<(f64, f64), Reply> {
    z.score(member)
        .and_then(geohash::decode_score)
        .ok_or(Reply::StaticError(
            "ERR could not decode requested zset member",
        ))
}

/// Redis's `georadiusGeneric`, run on the shard owning the source key.
fn search(ctx: &mut Ctx<'_>, args: &[Bytes], kind: Kind) -> Outcome {
    match search_inner(ctx, args, kind) {
        Ok(o) => o,
        Err(r) => Outcome::Reply(r),
    }
}

fn search_inner(ctx: &mut Ctx<'_>, args: &[Bytes], kind: Kind) -> Result<Outcome, Reply> {
    let resp3 = ctx.resp3;
    let zobj = read_zset(ctx, &args[kind.src_index()])?;
    let z: Option<&ZSetValue> = zobj.map(|z| &*z);
    let mut storekey: Option<Bytes> = None;
    let mut storedist = false;
    let mut center = (0.0, 0.0);
    let mut shape_kind = ShapeKind::Circle(0.0);
    let mut conversion = 0.0;
    let base = match kind {
        Kind::Coords { .. } => {
            center = arg_lonlat(&args[2], &args[3])?;
            let (r, conv) = arg_distance(&args[4], &args[5])?;
            shape_kind = ShapeKind::Circle(r);
            conversion = conv;
            6
        }
        Kind::Member { .. } => {
            if let Some(z) = z {
                center = member_pos(z, &args[2])?;
                let (r, conv) = arg_distance(&args[3], &args[4])?;
                shape_kind = ShapeKind::Circle(r);
                conversion = conv;
            }
            5
        }
        Kind::Search => 2,
        Kind::SearchStore => {
            storekey = Some(args[1].clone());
            3
        }
    };

    let (mut withdist, mut withhash, mut withcoords) = (false, false, false);
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let mut sort = Sort::None;
    let mut any = false;
    let mut count: i64 = 0;
    let search = kind.is_search();
    let remaining = args.len().saturating_sub(base);
    let mut i = 0;
    while i < remaining {
        let arg = &args[base + i];
        let at = |k: usize| &args[base + i + k];
        if kw(arg, "withdist") {
            withdist = true;
        } else if kw(arg, "withhash") {
            withhash = true;
        } else if kw(arg, "withcoord") {
            withcoords = true;
        } else if kw(arg, "any") {
            any = true;
        } else if kw(arg, "asc") {
            sort = Sort::Asc;
        } else if kw(arg, "desc") {
            sort = Sort::Desc;
        } else if kw(arg, "count") && i + 1 < remaining {
            count = arg_i64(at(1))?;
            if count <= 0 {
                return Err(Reply::StaticError("ERR COUNT must be > 0"));
            }
            i += 1;
        } else if kw(arg, "store") && i + 1 < remaining && !kind.nostore() && !search {
            storekey = Some(at(1).clone());
            storedist = false;
            i += 1;
        } else if kw(arg, "storedist") && i + 1 < remaining && !kind.nostore() && !search {
            storekey = Some(at(1).clone());
            storedist = true;
            i += 1;
        } else if kw(arg, "storedist") && kind == Kind::SearchStore {
            storedist = true;
        } else if kw(arg, "frommember") && i + 1 < remaining && search && !fromloc {
            if let Some(z) = z {
                center = member_pos(z, at(1))?;
            }
            frommember = true;
            i += 1;
        } else if kw(arg, "fromlonlat") && i + 2 < remaining && search && !frommember {
            center = arg_lonlat(at(1), at(2))?;
            fromloc = true;
            i += 2;
        } else if kw(arg, "byradius") && i + 2 < remaining && search && !bybox {
            let (r, conv) = arg_distance(at(1), at(2))?;
            shape_kind = ShapeKind::Circle(r);
            conversion = conv;
            byradius = true;
            i += 2;
        } else if kw(arg, "bybox") && i + 3 < remaining && search && !byradius {
            let (w, h, conv) = arg_box(at(1), at(2), at(3))?;
            shape_kind = ShapeKind::Box(w, h);
            conversion = conv;
            bybox = true;
            i += 3;
        } else {
            return Err(err::SYNTAX);
        }
        i += 1;
    }

    if storekey.is_some() && (withdist || withhash || withcoords) {
        let what = if kind == Kind::SearchStore {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(Reply::Error(format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    let name = String::from_utf8_lossy(cstr(&args[0])).into_owned();
    if search && !(frommember || fromloc) {
        return Err(Reply::Error(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if search && !(byradius || bybox) {
        return Err(Reply::Error(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if any && count == 0 {
        return Err(Reply::StaticError(
            "ERR the ANY argument requires COUNT argument",
        ));
    }
    let Some(z) = z else {
        return Ok(match storekey {
            Some(dst) => Outcome::Store {
                dst,
                entries: Vec::new(),
            },
            None => Outcome::Reply(Reply::Array(Vec::new())),
        });
    };
    if count != 0 && sort == Sort::None && !any {
        sort = Sort::Asc;
    }

    let shape = Shape {
        lon: center.0,
        lat: center.1,
        conversion,
        kind: shape_kind,
    };
    let limit = if any { count as usize } else { 0 };
    let (mut points, members) = collect(z, &shape, limit);

    if points.is_empty() && storekey.is_none() {
        return Ok(Outcome::Reply(Reply::Array(Vec::new())));
    }
    let total = points.len();
    let returned = if count == 0 || (total as i64) < count {
        total
    } else {
        count as usize
    };
    if sort != Sort::None {
        geohash::sort_points(&mut points, sort == Sort::Desc, returned);
    }
    points.truncate(returned);

    match storekey {
        None => {
            let options = withdist as usize + withhash as usize + withcoords as usize;
            let out = points
                .iter()
                .map(|gp| {
                    let member = Reply::bulk(members[gp.member]);
                    if options == 0 {
                        return member;
                    }
                    let mut item = Vec::with_capacity(options + 1);
                    item.push(member);
                    if withdist {
                        item.push(distance_reply(gp.dist / conversion));
                    }
                    if withhash {
                        item.push(Reply::Int(gp.score as i64));
                    }
                    if withcoords {
                        item.push(position_reply(gp.longitude, gp.latitude, resp3));
                    }
                    Reply::Array(item)
                })
                .collect();
            Ok(Outcome::Reply(Reply::Array(out)))
        }
        Some(dst) => {
            let mut entries: Vec<(SmallBytes, f64)> = points
                .iter()
                .map(|gp| {
                    let score = if storedist {
                        gp.dist / conversion
                    } else {
                        gp.score
                    };
                    (SmallBytes::new(members[gp.member]), score)
                })
                .collect();
            entries.sort_by(|a, b| {
                a.1.partial_cmp(&b.1)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.0[..].cmp(&b.0[..]))
            });
            Ok(Outcome::Store { dst, entries })
        }
    }
}

/// `membersOfAllNeighbors`: the points of the 9 cells that are inside the
/// shape, in Redis's visiting order; stops at `limit` points when nonzero.
fn collect<'a>(z: &'a ZSetValue, shape: &Shape, limit: usize) -> (Vec<GeoPoint>, Vec<&'a [u8]>) {
    let cells = shape.search_cells();
    let mut points = Vec::new();
    let mut members = Vec::new();
    let mut last: Option<usize> = None;
    for (i, cell) in cells.iter().enumerate() {
        if cell.is_zero() {
            continue;
        }
        // Huge radii can make neighbours repeat: skip a repeat of the last
        // cell scanned.
        if let Some(l) = last
            && l != 0
            && cells[l] == *cell
        {
            continue;
        }
        if limit != 0 && points.len() >= limit {
            break;
        }
        let (min, max) = geohash::cell_scores(*cell);
        let range = ScoreRange {
            min,
            minex: false,
            max,
            maxex: true,
        };
        let (lo, hi) = z.score_bounds(&range);
        for (m, score) in z.range(lo, hi, false) {
            if let Some((lon, lat)) = geohash::decode_score(score)
                && let Some(dist) = shape.distance_if_inside(lon, lat)
            {
                points.push(GeoPoint {
                    longitude: lon,
                    latitude: lat,
                    dist,
                    score,
                    member: members.len(),
                });
                members.push(m);
            }
            if limit != 0 && points.len() >= limit {
                break;
            }
        }
        last = Some(i);
    }
    (points, members)
}

/// Writes a search result at `dst` (deleting it when empty), as
/// GEOSEARCHSTORE and STORE/STOREDIST do. Returns the stored count.
fn store(ctx: &mut Ctx<'_>, dst: &[u8], entries: Vec<(SmallBytes, f64)>) -> usize {
    let now = ctx.now_ms;
    let n = entries.len();
    if n == 0 {
        ctx.db().delete(dst, now);
        return 0;
    }
    let lim = limits(ctx);
    let z = ZSetValue::from_sorted(entries, lim);
    ctx.db().set(dst, Value::ZSet(Box::new(z)), 0, now);
    n
}

/// Runs a search on this shard, storing here when it stores.
fn search_here(ctx: &mut Ctx<'_>, args: &[Bytes], kind: Kind) -> Reply {
    match search(ctx, args, kind) {
        Outcome::Reply(r) => r,
        Outcome::Store { dst, entries } => Reply::Int(store(ctx, &dst, entries) as i64),
    }
}

fn georadius_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    search_here(ctx, args, Kind::Coords { nostore: true })
}

fn georadiusbymember_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    search_here(ctx, args, Kind::Member { nostore: true })
}

fn geosearch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    search_here(ctx, args, Kind::Search)
}

fn georadius_here(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    search_here(ctx, args, Kind::Coords { nostore: false })
}

fn georadiusbymember_here(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    search_here(ctx, args, Kind::Member { nostore: false })
}

fn geosearchstore_here(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    search_here(ctx, args, Kind::SearchStore)
}

/// Key positions of GEORADIUS / GEORADIUSBYMEMBER from `from` on: the
/// source, then every argument that follows a STORE or STOREDIST keyword
/// (a superset of the destination the parser picks).
fn store_keys_from(args: &[Bytes], from: usize) -> Vec<usize> {
    let mut v = vec![1];
    let last = args.len().saturating_sub(1);
    for (i, a) in args.iter().enumerate().take(last).skip(from) {
        if kw(a, "store") || kw(a, "storedist") {
            v.push(i + 1);
        }
    }
    v
}

fn georadius_keys(args: &[Bytes]) -> Vec<usize> {
    store_keys_from(args, 6)
}

fn georadiusbymember_keys(args: &[Bytes]) -> Vec<usize> {
    store_keys_from(args, 5)
}

/// The commands that may store: one hop when every key is on the source's
/// shard, otherwise lock, search on the source's shard, store on the
/// destination's.
async fn search_store(
    c: &mut Client,
    args: Vec<Bytes>,
    kind: Kind,
    key_idx: Vec<usize>,
    here: super::KeyedFn,
) -> Reply {
    let keys: Vec<Bytes> = key_idx.iter().map(|&i| args[i].clone()).collect();
    let src = c.shard_of(&args[kind.src_index()]);
    if keys.iter().all(|k| c.shard_of(k) == src) {
        let keys = keys.iter().map(|k| k.to_vec()).collect();
        return c.run_keyed(src, keys, here, args).await;
    }
    let tx = c.lock_keys(&keys).await;
    let out = tx.run(src, move |ctx| search(ctx, &args, kind)).await;
    match out {
        Outcome::Reply(r) => r,
        Outcome::Store { dst, entries } => {
            let shard = c.shard_of(&dst);
            let n = tx.run(shard, move |ctx| store(ctx, &dst, entries)).await;
            Reply::Int(n as i64)
        }
    }
}

fn georadius(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    let idx = georadius_keys(&args);
    Box::pin(search_store(
        c,
        args,
        Kind::Coords { nostore: false },
        idx,
        georadius_here,
    ))
}

fn georadiusbymember(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    let idx = georadiusbymember_keys(&args);
    Box::pin(search_store(
        c,
        args,
        Kind::Member { nostore: false },
        idx,
        georadiusbymember_here,
    ))
}

fn geosearchstore(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(search_store(
        c,
        args,
        Kind::SearchStore,
        vec![1, 2],
        geosearchstore_here,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_format() {
        assert_eq!(human(13.361389338970184), "13.36138933897018433");
        assert_eq!(human(1.5), "1.5");
        assert_eq!(human(180.0), "180");
        assert_eq!(human(-0.0), "0");
    }

    #[test]
    fn store_key_positions() {
        let a: Vec<Bytes> = [
            "georadius",
            "a",
            "1",
            "1",
            "1",
            "km",
            "store",
            "b",
            "storedist",
            "c",
        ]
        .iter()
        .map(|s| Bytes::from(*s))
        .collect();
        assert_eq!(georadius_keys(&a), vec![1, 7, 9]);
    }
}
