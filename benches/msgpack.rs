//! Aether's one MessagePack codec (`aether_core::msgpack`) beside `rmp`'s
//! own readers and writers, on the bus's positional envelope body (12
//! fields: format, namespace, id, type, actor, version, schema, seconds,
//! nanoseconds, offset, a 128-byte payload, nil metadata), in the same run.
//! The codec is written by hand only because it reads and writes these
//! bodies faster than `rmp`: the paired ratios say by how much.
//!
//! `cargo bench -p aether-benches --bench msgpack`

use std::hint::black_box;
use std::time::{Duration, Instant};

use aether_benches::bus_sample_event;
use aether_core::Event;
use aether_core::msgpack::{Reader, Writer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const NS: &str = "acme.orders";
const ROUNDS: usize = 41;
const PER_ROUND: usize = 20_000;

fn encode_aether(out: &mut Vec<u8>, e: &Event) {
    let ts = e.timestamp;
    let mut w = Writer(out);
    w.array(12);
    w.uint(2);
    w.str(NS);
    w.bin(e.id.as_uuid().as_bytes());
    w.str(&e.event_type);
    w.str(e.actor_id.as_str());
    w.uint(e.version.get());
    w.uint(u64::from(e.schema_version));
    w.sint(ts.unix_timestamp());
    w.uint(u64::from(ts.nanosecond()));
    w.sint(i64::from(ts.offset().whole_seconds()));
    w.bin(&e.data);
    w.nil();
}

fn encode_rmp(out: &mut Vec<u8>, e: &Event) {
    use rmp::encode::{write_array_len, write_bin, write_nil, write_sint, write_str, write_uint};
    let ts = e.timestamp;
    let ok = write_array_len(out, 12).is_ok()
        && write_uint(out, 2).is_ok()
        && write_str(out, NS).is_ok()
        && write_bin(out, e.id.as_uuid().as_bytes()).is_ok()
        && write_str(out, &e.event_type).is_ok()
        && write_str(out, e.actor_id.as_str()).is_ok()
        && write_uint(out, e.version.get()).is_ok()
        && write_uint(out, u64::from(e.schema_version)).is_ok()
        && write_sint(out, ts.unix_timestamp()).is_ok()
        && write_uint(out, u64::from(ts.nanosecond())).is_ok()
        && write_sint(out, i64::from(ts.offset().whole_seconds())).is_ok()
        && write_bin(out, &e.data).is_ok()
        && write_nil(out).is_ok();
    assert!(ok, "writing to a vector cannot fail");
}

/// What both readers return: every field, strings and payload borrowed.
type Fields<'a> = (
    &'a [u8],
    &'a [u8],
    &'a [u8],
    &'a [u8],
    u64,
    u32,
    i64,
    u32,
    i32,
    &'a [u8],
);

fn decode_aether(body: &[u8]) -> Option<Fields<'_>> {
    let r = &mut Reader::new(body);
    (r.array().ok()? == 12 && r.uint().ok()? == 2).then_some(())?;
    let fields = (
        r.str_bytes().ok()?,
        r.bin().ok()?,
        r.str_bytes().ok()?,
        r.str_bytes().ok()?,
        r.int().ok()?,
        r.int().ok()?,
        r.int().ok()?,
        r.int().ok()?,
        r.int().ok()?,
        r.bin().ok()?,
    );
    (r.nil().ok()? && r.at_end()).then_some(fields)
}

fn decode_rmp(body: &[u8]) -> Option<Fields<'_>> {
    use rmp::decode::{read_array_len, read_bin_len, read_int, read_nil, read_str_len};
    fn take<'a>(rd: &mut &'a [u8], len: u32) -> Option<&'a [u8]> {
        let (head, rest) = rd.split_at_checked(len as usize)?;
        *rd = rest;
        Some(head)
    }
    let rd = &mut &*body;
    (read_array_len(rd).ok()? == 12 && read_int::<u64, _>(rd).ok()? == 2).then_some(())?;
    let ns_len = read_str_len(rd).ok()?;
    let ns = take(rd, ns_len)?;
    let id_len = read_bin_len(rd).ok()?;
    let id = take(rd, id_len)?;
    let ty_len = read_str_len(rd).ok()?;
    let ty = take(rd, ty_len)?;
    let actor_len = read_str_len(rd).ok()?;
    let actor = take(rd, actor_len)?;
    let fields = (
        ns,
        id,
        ty,
        actor,
        read_int(rd).ok()?,
        read_int(rd).ok()?,
        read_int(rd).ok()?,
        read_int(rd).ok()?,
        read_int(rd).ok()?,
        {
            let len = read_bin_len(rd).ok()?;
            take(rd, len)?
        },
    );
    (read_nil(rd).is_ok() && rd.is_empty()).then_some(fields)
}

/// The median over `ROUNDS` alternating rounds of `a`'s time over `b`'s.
fn paired(mut a: impl FnMut(), mut b: impl FnMut()) -> f64 {
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            f();
        }
        start.elapsed()
    };
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|_| time(&mut a).as_secs_f64() / time(&mut b).as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ROUNDS / 2]
}

fn codec(c: &mut Criterion) {
    let event = bus_sample_event();
    let mut body = Vec::new();
    encode_aether(&mut body, &event);
    let mut by_rmp = Vec::new();
    encode_rmp(&mut by_rmp, &event);
    assert_eq!(body, by_rmp, "both write the same bytes");
    assert_eq!(
        decode_aether(&body),
        decode_rmp(&body),
        "both read the same"
    );
    assert!(decode_aether(&body).is_some());

    let mut g = c.benchmark_group("msgpack_decode");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("aether_reader", |b| {
        b.iter(|| decode_aether(black_box(&body)));
    });
    g.bench_function("rmp_baseline", |b| {
        b.iter(|| decode_rmp(black_box(&body)));
    });
    g.finish();

    let mut g = c.benchmark_group("msgpack_encode");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    let mut out = Vec::with_capacity(512);
    g.bench_function("aether_writer", |b| {
        b.iter(|| {
            out.clear();
            encode_aether(&mut out, black_box(&event));
        });
    });
    g.bench_function("rmp_baseline", |b| {
        b.iter(|| {
            out.clear();
            encode_rmp(&mut out, black_box(&event));
        });
    });
    g.finish();

    if std::env::args().any(|a| a == "--bench") {
        let decode = paired(
            || {
                black_box(decode_aether(black_box(&body)));
            },
            || {
                black_box(decode_rmp(black_box(&body)));
            },
        );
        let mut out_a = Vec::with_capacity(512);
        let mut out_b = Vec::with_capacity(512);
        let encode = paired(
            || {
                out_a.clear();
                encode_aether(&mut out_a, black_box(&event));
            },
            || {
                out_b.clear();
                encode_rmp(&mut out_b, black_box(&event));
            },
        );
        println!(
            "paired ratios vs rmp ({ROUNDS} alternating rounds of {PER_ROUND}): \
             decode {decode:.2}, encode {encode:.2} (below 1: the hand codec is faster)"
        );
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
