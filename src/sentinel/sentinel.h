/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The sentinel: watches protected trees, keeps pre-images before untrusted processes change
 * files, scores process groups for ransomware/wiper behaviour, stops them, denies raw-disk
 * writes, and records incidents in an SQLite database (docs/internals/sentinel.md).
 */

#include <sys/types.h>

#include "../base/buf.h"
#include "../base/macro.h"

typedef enum HfAction {
        HF_ACTION_ALERT,
        HF_ACTION_STOP,
        HF_ACTION_KILL,
} HfAction;

typedef enum HfMode {
        HF_MODE_AUTO,
        HF_MODE_PRE_CONTENT, /* FAN_PRE_ACCESS + FAN_OPEN_PERM (6.14+) */
        HF_MODE_OPEN_PERM,   /* FAN_OPEN_PERM with flags from /proc (5.19+, Debian 12) */
        HF_MODE_NOTIFY,      /* detection only */
} HfMode;

typedef struct HfTrusted {
        char *path; /* exact executable path */
        uint8_t sha256[32];
        bool has_sha256;
        char *parent; /* executable path the parent must have, NULL for any */
        bool tree;    /* descendants are trusted too */
} HfTrusted;

typedef struct HfSentinelConfig {
        char **paths; /* protected trees (absolute) */
        size_t n_paths;
        char **exclude; /* subtrees of protected trees not scored (still pre-imaged) */
        size_t n_exclude;
        HfTrusted *trusted;
        size_t n_trusted;
        HfAction action;
        HfMode mode;
        char *state_dir;
        bool decoys;
        bool raw_disk_guard;
        bool pins;              /* hard-link pin on first write-open by an untrusted process */
        double threshold;       /* group score that triggers the action */
        double alert_threshold; /* group score that logs a warning */
        unsigned window;        /* seconds a signal counts towards a group's score */
        unsigned epoch;         /* seconds between ignore-mark flushes (fresh pre-images) */
        uint64_t copy_limit;    /* largest file byte-copied as a pre-image (ext4) */
        double retention;       /* seconds a pre-image is kept at least (retention.h) */
        double shadow_share;    /* share of a filesystem its shadow store may use */
        bool syslog;            /* alerts to syslog/journald */
        char *alert_file;       /* JSON-lines alert sink; relative names are under state */
        char *webhook;          /* URL POSTed one JSON alert (curl), NULL for none */
        char *config_path;      /* the file it was read from (guarded like the state) */
} HfSentinelConfig;

void hf_sentinel_config_init(HfSentinelConfig *c);
void hf_sentinel_config_done(HfSentinelConfig *c);
/*
 * Parses the text of a config file into c (which has its defaults). On -EPROTO, err names the
 * line and the problem. Every byte may be hostile (fuzzed).
 */
int hf_sentinel_config_parse(HfSentinelConfig *c, const char *text, size_t len, char *err,
                             size_t errn);
int hf_sentinel_config_load(HfSentinelConfig *c, const char *path, char *err, size_t errn);
int hf_sentinel_config_add_path(HfSentinelConfig *c, const char *path);
const char *hf_action_name(HfAction a);
int hf_action_parse(const char *s, HfAction *ret);

/* Runs in the foreground until SIGINT/SIGTERM. Root only. */
int hf_sentinel_run(const HfSentinelConfig *c);

/* SQLite's Unix layer opens files by paths of at most this many bytes. */
#define HF_DB_PATH_MAX 512
/* state_dir/sentinel.db into buf (n bytes); -ENAMETOOLONG, said in one sentence, when SQLite
 * could not open it by that path. */
int hf_db_path(const char *state_dir, char *buf, size_t n);

/* `holdfast incidents` / `incident show`: -ENOENT for an unknown incident or no database. */
int hf_incidents_list(const char *state_dir, bool json, FILE *out);
int hf_incident_show(const char *state_dir, int64_t id, bool json, FILE *out);

/* `holdfast allow-disk -- CMD...`: asks the running sentinel, then execs CMD. */
int hf_allow_disk_exec(const char *state_dir, char **argv);

/* ---- content analysis (pure; runs in the privsep child; fuzzed) ---- */

typedef enum HfMagic {
        HF_MAGIC_NONE, /* binary without a known signature */
        HF_MAGIC_EMPTY,
        HF_MAGIC_TEXT,
        HF_MAGIC_PDF,
        HF_MAGIC_PNG,
        HF_MAGIC_JPEG,
        HF_MAGIC_GIF,
        HF_MAGIC_ZIP,
        HF_MAGIC_GZIP,
        HF_MAGIC_ZSTD,
        HF_MAGIC_XZ,
        HF_MAGIC_BZIP2,
        HF_MAGIC_SQLITE,
        HF_MAGIC_ELF,
        HF_MAGIC_PNM,
        HF_MAGIC_PGP,
        HF_MAGIC_TAR,
        HF_MAGIC_GIT,
        _HF_MAGIC_MAX,
} HfMagic;

const char *hf_magic_name(HfMagic m);
HfMagic hf_magic_detect(const uint8_t *p, size_t n);
/* Compressed, encrypted-by-design or media formats: high entropy is expected there. */
bool hf_magic_is_dense(HfMagic m);

typedef struct HfFeatures {
        uint64_t size_before, size_after;
        uint64_t compared;      /* bytes compared (sampled for big files) */
        uint64_t changed;       /* bytes that differ, plus bytes appended */
        double entropy_changed; /* bits/byte of the new values of the changed bytes */
        double entropy_before;  /* bits/byte of the old values at the same places */
        double entropy_after;   /* bits/byte of the whole sample after */
        double b64_changed;     /* share of changed new bytes in [A-Za-z0-9+/=\n] */
        double b64_before;
        double printable_before; /* share of printable/whitespace bytes in the old sample */
        uint32_t blocks_total, blocks_changed; /* 4 KiB blocks in the sample */
        uint8_t uniform_changed; /* all changed bytes have one value (zero-fill wipes) */
        uint8_t has_before;
        HfMagic magic_before, magic_after;
} HfFeatures;

/* Features of a change from pre (may be NULL: a new file) to post. */
void hf_analyze_buffers(const uint8_t *pre, size_t pre_n, uint64_t pre_size, const uint8_t *post,
                        size_t post_n, uint64_t post_size, HfFeatures *ret);
/* Reads samples of both fds (pre_fd may be -1) and computes the features. */
int hf_analyze_fds(int pre_fd, int post_fd, HfFeatures *ret);
/* The byte spans of a file of size sz that hf_analyze_fds() reads (a small file whole; the
 * head and evenly spaced chunks of a big one). Returns their number. */
#define HF_SAMPLE_SPANS 33
size_t hf_analyze_spans(uint64_t sz, uint64_t off[HF_SAMPLE_SPANS], uint64_t len[HF_SAMPLE_SPANS]);

/* ---- per-file verdicts (pure) ---- */

typedef enum HfFileVerdict {
        HF_FILE_BENIGN,
        HF_FILE_ENCRYPTED,       /* changed bytes look random, result has no dense format */
        HF_FILE_MASKED,          /* changed bytes are base64-shaped random text */
        HF_FILE_MAGIC_DESTROYED, /* a known format became unknown binary */
        HF_FILE_TRUNCATED,       /* non-empty became empty */
        HF_FILE_WIPED,           /* overwritten with one repeated byte */
        HF_FILE_NEW_RANDOM,      /* a new file of random-looking bytes (encrypted copy?) */
} HfFileVerdict;

const char *hf_file_verdict_name(HfFileVerdict v);
HfFileVerdict hf_file_verdict(const HfFeatures *f);
static inline bool hf_file_verdict_destructive(HfFileVerdict v)
{
        return v != HF_FILE_BENIGN && v != HF_FILE_NEW_RANDOM;
}
