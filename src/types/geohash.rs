//! Geohash math, ported from Redis 7.0's `geohash.c`, `geohash_helper.c`
//! and the sorting helpers of `geo.c`, so that scores, decoded positions,
//! distances, the cells a search visits and the order of results are the
//! ones Redis produces.
//!
//! A position is stored in a sorted set as the 52-bit interleaved geohash
//! of its longitude (odd bits) and latitude (even bits), each quantized to
//! 26 bits over `[-180, 180]` and `[-85.05112878, 85.05112878]`. A search
//! estimates a cell size from the radius, takes the cell of the centre and
//! its 8 neighbours (dropping those outside the bounding box), walks each
//! cell's score range and keeps the members inside the shape.

/// Bits per coordinate of a stored hash (26 * 2 = 52 bits).
pub const STEP_MAX: u8 = 26;
/// Lowest latitude Redis accepts (the Web Mercator limit).
pub const LAT_MIN: f64 = -85.05112878;
/// Highest latitude Redis accepts.
pub const LAT_MAX: f64 = 85.05112878;
/// Lowest longitude.
pub const LONG_MIN: f64 = -180.0;
/// Highest longitude.
pub const LONG_MAX: f64 = 180.0;
/// Earth's quadratic mean radius for WGS-84, as Redis uses it.
pub const EARTH_RADIUS_IN_METERS: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;
const D_R: f64 = std::f64::consts::PI / 180.0;

#[inline]
fn deg_rad(ang: f64) -> f64 {
    ang * D_R
}

#[inline]
fn rad_deg(ang: f64) -> f64 {
    ang / D_R
}

/// A geohash of `step` bits per coordinate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashBits {
    /// Interleaved bits: longitude on odd positions, latitude on even ones.
    pub bits: u64,
    /// Bits per coordinate.
    pub step: u8,
}

impl HashBits {
    /// Redis's `HASHISZERO`: an excluded (zeroed) neighbour.
    pub fn is_zero(&self) -> bool {
        self.bits == 0 && self.step == 0
    }

    /// The hash shifted to 52 bits (`geohashAlign52Bits`).
    pub fn align52(&self) -> u64 {
        self.bits << (52 - self.step as u32 * 2)
    }
}

/// A closed coordinate interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Range {
    /// Lower end.
    pub min: f64,
    /// Upper end.
    pub max: f64,
}

/// The cell a hash covers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Area {
    /// Longitude interval.
    pub longitude: Range,
    /// Latitude interval.
    pub latitude: Range,
}

const WGS84_LONG: Range = Range {
    min: LONG_MIN,
    max: LONG_MAX,
};
const WGS84_LAT: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

/// Spreads the low 32 bits of `v` to the even bit positions.
#[inline]
fn spread(v: u32) -> u64 {
    let mut x = v as u64;
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// Gathers the even bit positions of `v` into 32 bits.
#[inline]
fn squash(v: u64) -> u64 {
    let mut x = v & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF
}

/// Redis's `interleave64(xlo, ylo)`: `xlo` on even bits, `ylo` on odd bits.
#[inline]
pub fn interleave64(xlo: u32, ylo: u32) -> u64 {
    spread(xlo) | (spread(ylo) << 1)
}

/// Redis's `deinterleave64`: even bits in the low half, odd bits high.
#[inline]
pub fn deinterleave64(v: u64) -> u64 {
    squash(v) | (squash(v >> 1) << 32)
}

/// C's `(uint32_t)` conversion of a non-negative double, as x86-64 code
/// does it for values below 2^63 (truncation, then the low 32 bits).
#[inline]
fn d2u32(x: f64) -> u32 {
    (x as i64) as u32
}

/// C's `(uint64_t)` conversion of a double as gcc compiles it on x86-64:
/// `cvttsd2si` below 2^63, `cvttsd2si(x - 2^63) ^ 2^63` above, where
/// out-of-range inputs give the "integer indefinite" value. Negative
/// scores therefore wrap like in Redis instead of saturating.
#[inline]
pub fn double_to_u64(x: f64) -> u64 {
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    fn cvtt(x: f64) -> i64 {
        if x.is_nan() || !(-TWO63..TWO63).contains(&x) {
            i64::MIN
        } else {
            x as i64
        }
    }
    if x < TWO63 {
        cvtt(x) as u64
    } else {
        (cvtt(x - TWO63) as u64) ^ (1 << 63)
    }
}

/// `geohashEncode`: the hash of a position over the given ranges, or None
/// outside the WGS-84 limits or the ranges.
pub fn encode(
    long_range: Range,
    lat_range: Range,
    lon: f64,
    lat: f64,
    step: u8,
) -> Option<HashBits> {
    if step > 32 || step == 0 {
        return None;
    }
    if !(LONG_MIN..=LONG_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    if lat < lat_range.min || lat > lat_range.max || lon < long_range.min || lon > long_range.max {
        return None;
    }
    let mut lat_offset = (lat - lat_range.min) / (lat_range.max - lat_range.min);
    let mut long_offset = (lon - long_range.min) / (long_range.max - long_range.min);
    let scale = (1u64 << step) as f64;
    lat_offset *= scale;
    long_offset *= scale;
    Some(HashBits {
        bits: interleave64(d2u32(lat_offset), d2u32(long_offset)),
        step,
    })
}

/// `geohashEncodeWGS84`.
pub fn encode_wgs84(lon: f64, lat: f64, step: u8) -> Option<HashBits> {
    encode(WGS84_LONG, WGS84_LAT, lon, lat, step)
}

/// `geohashDecode`: the cell of `hash` over the given ranges.
pub fn decode(long_range: Range, lat_range: Range, hash: HashBits) -> Option<Area> {
    if hash.is_zero() {
        return None;
    }
    let sep = deinterleave64(hash.bits);
    let lat_scale = lat_range.max - lat_range.min;
    let long_scale = long_range.max - long_range.min;
    let ilato = sep as u32;
    let ilono = (sep >> 32) as u32;
    let div = (1u64 << hash.step) as f64;
    Some(Area {
        latitude: Range {
            min: lat_range.min + (ilato as f64 / div) * lat_scale,
            max: lat_range.min + (ilato.wrapping_add(1) as f64 / div) * lat_scale,
        },
        longitude: Range {
            min: long_range.min + (ilono as f64 / div) * long_scale,
            max: long_range.min + (ilono.wrapping_add(1) as f64 / div) * long_scale,
        },
    })
}

/// `geohashDecodeToLongLatWGS84`: the centre of the cell, clamped to the
/// valid ranges.
pub fn decode_to_lonlat(hash: HashBits) -> Option<(f64, f64)> {
    let a = decode(WGS84_LONG, WGS84_LAT, hash)?;
    let lon = ((a.longitude.min + a.longitude.max) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((a.latitude.min + a.latitude.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    Some((lon, lat))
}

/// `decodeGeohash` of geo.c: the position a sorted-set score stands for.
pub fn decode_score(score: f64) -> Option<(f64, f64)> {
    decode_to_lonlat(HashBits {
        bits: double_to_u64(score),
        step: STEP_MAX,
    })
}

/// The score GEOADD stores for a valid position (as ZADD parses it back).
pub fn score_of(lon: f64, lat: f64) -> Option<f64> {
    encode_wgs84(lon, lat, STEP_MAX).map(|h| h.align52() as f64)
}

/// True when a position is within Redis's accepted limits.
pub fn valid_lonlat(lon: f64, lat: f64) -> bool {
    (LONG_MIN..=LONG_MAX).contains(&lon) && (LAT_MIN..=LAT_MAX).contains(&lat)
}

/// GEOHASH's 11-character string: the position decoded from `score`,
/// re-encoded over the standard latitude range `[-90, 90]`.
pub fn standard_geohash(score: f64) -> Option<[u8; 11]> {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (lon, lat) = decode_score(score)?;
    let hash = encode(
        Range {
            min: -180.0,
            max: 180.0,
        },
        Range {
            min: -90.0,
            max: 90.0,
        },
        lon,
        lat,
        26,
    )
    .unwrap_or_default();
    let mut out = [b'0'; 11];
    for (i, c) in out.iter_mut().enumerate().take(10) {
        let idx = (hash.bits >> (52 - (i + 1) * 5)) & 0x1f;
        *c = ALPHABET[idx as usize];
    }
    Some(out)
}

fn move_x(hash: &mut HashBits, d: i8) {
    if d == 0 {
        return;
    }
    let mut x = hash.bits & 0xaaaa_aaaa_aaaa_aaaa;
    let y = hash.bits & 0x5555_5555_5555_5555;
    let shift = 64 - hash.step as u32 * 2;
    let zz = 0x5555_5555_5555_5555u64 >> shift;
    if d > 0 {
        x = x.wrapping_add(zz + 1);
    } else {
        x |= zz;
        x = x.wrapping_sub(zz + 1);
    }
    x &= 0xaaaa_aaaa_aaaa_aaaau64 >> shift;
    hash.bits = x | y;
}

fn move_y(hash: &mut HashBits, d: i8) {
    if d == 0 {
        return;
    }
    let x = hash.bits & 0xaaaa_aaaa_aaaa_aaaa;
    let mut y = hash.bits & 0x5555_5555_5555_5555;
    let shift = 64 - hash.step as u32 * 2;
    let zz = 0xaaaa_aaaa_aaaa_aaaau64 >> shift;
    if d > 0 {
        y = y.wrapping_add(zz + 1);
    } else {
        y |= zz;
        y = y.wrapping_sub(zz + 1);
    }
    y &= 0x5555_5555_5555_5555u64 >> shift;
    hash.bits = x | y;
}

/// The 8 neighbours of a cell.
#[derive(Clone, Copy, Debug, Default)]
pub struct Neighbors {
    /// North.
    pub north: HashBits,
    /// East.
    pub east: HashBits,
    /// West.
    pub west: HashBits,
    /// South.
    pub south: HashBits,
    /// North-east.
    pub north_east: HashBits,
    /// South-east.
    pub south_east: HashBits,
    /// North-west.
    pub north_west: HashBits,
    /// South-west.
    pub south_west: HashBits,
}

/// `geohashNeighbors`.
pub fn neighbors(h: HashBits) -> Neighbors {
    let at = |dx: i8, dy: i8| {
        let mut n = h;
        move_x(&mut n, dx);
        move_y(&mut n, dy);
        n
    };
    Neighbors {
        east: at(1, 0),
        west: at(-1, 0),
        south: at(0, -1),
        north: at(0, 1),
        north_west: at(-1, 1),
        south_west: at(-1, -1),
        north_east: at(1, 1),
        south_east: at(1, -1),
    }
}

/// A search shape: a circle or an axis-aligned box around a centre.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ShapeKind {
    /// BYRADIUS / GEORADIUS: the radius, in the request's unit.
    Circle(f64),
    /// BYBOX: width and height, in the request's unit.
    Box(f64, f64),
}

/// Redis's `GeoShape`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    /// Centre longitude.
    pub lon: f64,
    /// Centre latitude.
    pub lat: f64,
    /// Meters per unit of the request.
    pub conversion: f64,
    /// Circle or box.
    pub kind: ShapeKind,
}

/// `geohashEstimateStepsByRadius`.
pub fn estimate_steps_by_radius(mut range_meters: f64, lat: f64) -> u8 {
    if range_meters == 0.0 {
        return 26;
    }
    let mut step: i32 = 1;
    while range_meters < MERCATOR_MAX {
        range_meters *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

impl Shape {
    /// `geohashBoundingBox`: `[min_lon, min_lat, max_lon, max_lat]`.
    pub fn bounding_box(&self) -> [f64; 4] {
        let (height, width) = match self.kind {
            ShapeKind::Circle(r) => (self.conversion * r, self.conversion * r),
            ShapeKind::Box(w, h) => (self.conversion * (h / 2.0), self.conversion * (w / 2.0)),
        };
        let lat_delta = rad_deg(height / EARTH_RADIUS_IN_METERS);
        let long_delta_top =
            rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(self.lat + lat_delta).cos());
        let long_delta_bottom =
            rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(self.lat - lat_delta).cos());
        let south = self.lat < 0.0;
        let d = if south {
            long_delta_bottom
        } else {
            long_delta_top
        };
        [
            self.lon - d,
            self.lat - lat_delta,
            self.lon + d,
            self.lat + lat_delta,
        ]
    }

    /// `geohashCalculateAreasByShapeWGS84`: the 9 cells to scan, in Redis's
    /// order (centre, N, S, E, W, NE, NW, SE, SW); excluded ones are zero.
    pub fn search_cells(&self) -> [HashBits; 9] {
        let [min_lon, min_lat, max_lon, max_lat] = self.bounding_box();
        let radius_meters = match self.kind {
            ShapeKind::Circle(r) => r,
            ShapeKind::Box(w, h) => ((w / 2.0) * (w / 2.0) + (h / 2.0) * (h / 2.0)).sqrt(),
        } * self.conversion;
        let mut steps = estimate_steps_by_radius(radius_meters, self.lat);
        let cell = |steps: u8| {
            let hash = encode(WGS84_LONG, WGS84_LAT, self.lon, self.lat, steps).unwrap_or_default();
            let n = neighbors(hash);
            let area = decode(WGS84_LONG, WGS84_LAT, hash).unwrap_or_default();
            (hash, n, area)
        };
        let (mut hash, mut n, mut area) = cell(steps);
        let dec = |h: HashBits| decode(WGS84_LONG, WGS84_LAT, h).unwrap_or_default();
        let decrease = dec(n.north).latitude.max < max_lat
            || dec(n.south).latitude.min > min_lat
            || dec(n.east).longitude.max < max_lon
            || dec(n.west).longitude.min > min_lon;
        if steps > 1 && decrease {
            steps -= 1;
            (hash, n, area) = cell(steps);
        }
        if steps >= 2 {
            let z = HashBits::default();
            if area.latitude.min < min_lat {
                n.south = z;
                n.south_west = z;
                n.south_east = z;
            }
            if area.latitude.max > max_lat {
                n.north = z;
                n.north_east = z;
                n.north_west = z;
            }
            if area.longitude.min < min_lon {
                n.west = z;
                n.south_west = z;
                n.north_west = z;
            }
            if area.longitude.max > max_lon {
                n.east = z;
                n.south_east = z;
                n.north_east = z;
            }
        }
        [
            hash,
            n.north,
            n.south,
            n.east,
            n.west,
            n.north_east,
            n.north_west,
            n.south_east,
            n.south_west,
        ]
    }

    /// `geoAppendIfWithinShape`'s test: the distance from the centre in
    /// meters when the point is inside the shape.
    pub fn distance_if_inside(&self, lon: f64, lat: f64) -> Option<f64> {
        match self.kind {
            ShapeKind::Circle(r) => {
                let d = distance(self.lon, self.lat, lon, lat);
                (d <= r * self.conversion).then_some(d)
            }
            ShapeKind::Box(w, h) => {
                let (width_m, height_m) = (w * self.conversion, h * self.conversion);
                if lat_distance(lat, self.lat) > height_m / 2.0 {
                    return None;
                }
                if distance(lon, lat, self.lon, lat) > width_m / 2.0 {
                    return None;
                }
                Some(distance(self.lon, self.lat, lon, lat))
            }
        }
    }
}

/// The score interval `[min, max)` holding every stored point of a cell
/// (`scoresOfGeoHashBox`).
pub fn cell_scores(hash: HashBits) -> (f64, f64) {
    let min = hash.align52();
    let next = HashBits {
        bits: hash.bits + 1,
        step: hash.step,
    };
    (min as f64, next.align52() as f64)
}

/// `geohashGetLatDistance`.
pub fn lat_distance(lat1d: f64, lat2d: f64) -> f64 {
    EARTH_RADIUS_IN_METERS * (deg_rad(lat2d) - deg_rad(lat1d)).abs()
}

/// `geohashGetDistance`: the haversine distance in meters.
pub fn distance(lon1d: f64, lat1d: f64, lon2d: f64, lat2d: f64) -> f64 {
    let lon1r = deg_rad(lon1d);
    let lon2r = deg_rad(lon2d);
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1d, lat2d);
    }
    let lat1r = deg_rad(lat1d);
    let lat2r = deg_rad(lat2d);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_IN_METERS * a.sqrt().asin()
}

/// One search result, laid out like Redis's `geoPoint` (40 bytes) so the C
/// library's `qsort` treats it exactly as it treats Redis's array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoPoint {
    /// Decoded longitude.
    pub longitude: f64,
    /// Decoded latitude.
    pub latitude: f64,
    /// Distance from the centre, in meters.
    pub dist: f64,
    /// The stored score.
    pub score: f64,
    /// Index of the member in the caller's member list.
    pub member: usize,
}

/// Redis's `sort_gp_asc`.
fn cmp_asc(a: &GeoPoint, b: &GeoPoint) -> i32 {
    if a.dist > b.dist {
        1
    } else if a.dist == b.dist {
        0
    } else {
        -1
    }
}

fn cmp_desc(a: &GeoPoint, b: &GeoPoint) -> i32 {
    -cmp_asc(a, b)
}

extern "C" fn c_cmp_asc(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
    // SAFETY: qsort passes pointers to elements of the GeoPoint slice.
    unsafe { cmp_asc(&*(a as *const GeoPoint), &*(b as *const GeoPoint)) }
}

extern "C" fn c_cmp_desc(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
    // SAFETY: as above.
    unsafe { cmp_desc(&*(a as *const GeoPoint), &*(b as *const GeoPoint)) }
}

/// Sorts like Redis: the whole array with the C library's `qsort` when
/// every result is returned, otherwise Redis's partial `pqsort` so that
/// the first `keep` entries are the ones Redis would return, in its order.
pub fn sort_points(points: &mut [GeoPoint], desc: bool, keep: usize) {
    if points.len() < 2 {
        return;
    }
    if keep >= points.len() {
        let f = if desc { c_cmp_desc } else { c_cmp_asc };
        // SAFETY: the pointer and length describe a valid, exclusively
        // borrowed slice of plain-old-data elements of the given size.
        unsafe {
            libc::qsort(
                points.as_mut_ptr().cast(),
                points.len(),
                std::mem::size_of::<GeoPoint>(),
                Some(f),
            )
        };
    } else if keep > 0 {
        let cmp = if desc { cmp_desc } else { cmp_asc };
        pqsort(points, 0, cmp, 0, keep - 1);
    }
}

/// Redis's `_pqsort` (NetBSD's qsort with range pruning), over the
/// sub-slice starting at `base` with `n = a.len() - base` elements; only
/// the ranks `lrange..=rrange` (absolute) end up sorted.
fn pqsort(
    a: &mut [GeoPoint],
    base: usize,
    cmp: fn(&GeoPoint, &GeoPoint) -> i32,
    lr: usize,
    rr: usize,
) {
    let mut base = base;
    let mut n = a.len() - base;
    let c = |a: &[GeoPoint], i: usize, j: usize| cmp(&a[i], &a[j]);
    let med3 = |a: &[GeoPoint], x: usize, y: usize, z: usize| -> usize {
        if c(a, x, y) < 0 {
            if c(a, y, z) < 0 {
                y
            } else if c(a, x, z) < 0 {
                z
            } else {
                x
            }
        } else if c(a, y, z) > 0 {
            y
        } else if c(a, x, z) < 0 {
            x
        } else {
            z
        }
    };
    let vecswap = |a: &mut [GeoPoint], x: usize, y: usize, k: usize| {
        for i in 0..k {
            a.swap(x + i, y + i);
        }
    };
    // Whether the sub-array [s, s + k) intersects the wanted ranks.
    let wanted = |s: usize, k: usize| !((lr < s && rr < s) || (lr >= s + k && rr >= s + k));
    loop {
        let a0 = base;
        let mut swap_cnt = false;
        if n < 7 {
            insertion(a, a0, n, cmp);
            return;
        }
        let mut pm = a0 + n / 2;
        if n > 7 {
            let mut pl = a0;
            let mut pn = a0 + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = med3(a, pl, pl + d, pl + 2 * d);
                pm = med3(a, pm - d, pm, pm + d);
                pn = med3(a, pn - 2 * d, pn - d, pn);
            }
            pm = med3(a, pl, pm, pn);
        }
        a.swap(a0, pm);
        let (mut pa, mut pb) = (a0 + 1, a0 + 1);
        let (mut pc, mut pd) = (a0 + n - 1, a0 + n - 1);
        loop {
            while pb <= pc {
                let r = c(a, pb, a0);
                if r > 0 {
                    break;
                }
                if r == 0 {
                    swap_cnt = true;
                    a.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let r = c(a, pc, a0);
                if r < 0 {
                    break;
                }
                if r == 0 {
                    swap_cnt = true;
                    a.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            a.swap(pb, pc);
            swap_cnt = true;
            pb += 1;
            pc -= 1;
        }
        if !swap_cnt {
            insertion(a, a0, n, cmp);
            return;
        }
        let pn = a0 + n;
        let r = (pa - a0).min(pb - pa);
        vecswap(a, a0, pb - r, r);
        let r = (pd - pc).min(pn - pd - 1);
        vecswap(a, pb, pn - r, r);
        let r = pb - pa;
        if r > 1 && wanted(a0, r) {
            let end = a0 + r;
            // Recurse on [a0, a0 + r): a sub-slice ending there.
            pqsort(&mut a[..end], a0, cmp, lr, rr);
        }
        let r = pd - pc;
        if r > 1 {
            base = pn - r;
            n = r;
            if wanted(base, n) {
                continue;
            }
        }
        return;
    }
}

fn insertion(a: &mut [GeoPoint], a0: usize, n: usize, cmp: fn(&GeoPoint, &GeoPoint) -> i32) {
    for pm in a0 + 1..a0 + n {
        let mut pl = pm;
        while pl > a0 && cmp(&a[pl - 1], &a[pl]) > 0 {
            a.swap(pl, pl - 1);
            pl -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palermo() {
        let s = score_of(13.361389, 38.115556).unwrap();
        assert_eq!(s, 3479099956230698.0);
        let (lon, lat) = decode_score(s).unwrap();
        assert!((lon - 13.361389).abs() < 1e-5 && (lat - 38.115556).abs() < 1e-5);
        assert_eq!(&standard_geohash(s).unwrap(), b"sqc8b49rny0");
        let c = score_of(15.087269, 37.502669).unwrap();
        let (lon2, lat2) = decode_score(c).unwrap();
        assert_eq!(
            format!("{:.4}", distance(lon, lat, lon2, lat2)),
            "166274.1516"
        );
    }

    #[test]
    fn interleave_roundtrip() {
        for (x, y) in [
            (0u32, 0u32),
            (1, 2),
            (0x3ff_ffff, 0x155_5555),
            (u32::MAX, 7),
        ] {
            let v = deinterleave64(interleave64(x, y));
            assert_eq!((v as u32, (v >> 32) as u32), (x, y));
        }
    }

    #[test]
    fn pqsort_prefix_matches_full_sort() {
        let mut rng = 99u64;
        for n in [5usize, 8, 30, 41, 100, 300] {
            let mut pts: Vec<GeoPoint> = (0..n)
                .map(|i| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    GeoPoint {
                        longitude: 0.0,
                        latitude: 0.0,
                        dist: (rng % 50) as f64,
                        score: 0.0,
                        member: i,
                    }
                })
                .collect();
            let mut full: Vec<f64> = pts.iter().map(|p| p.dist).collect();
            full.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let keep = n / 3 + 1;
            sort_points(&mut pts, false, keep);
            let got: Vec<f64> = pts[..keep].iter().map(|p| p.dist).collect();
            assert_eq!(got, full[..keep]);
        }
    }
}
