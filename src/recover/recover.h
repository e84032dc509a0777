/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Recovery (docs/internals/recover.md): `holdfast recover` puts back what an incident of the
 * sentinel touched, from the shadow store's pre-images, hard-link pins, the files themselves
 * (renamed but unchanged) and, as the last resort, the latest vault snapshot before the
 * incident; `holdfast drill` runs the whole story on a scratch tree; the attack simulator
 * (sandbox only) plays the attacker.
 *
 * The recover layer reads the sentinel's database through its documented schema
 * (docs/internals/sentinel.md), never through the sentinel's internals.
 */

#include <stdio.h>
#include <sys/types.h>

#include "../repo/repo.h"
#include "../vault/vault.h"

/* ---- recover ---- */

/* The wall clock (Unix seconds). */
double hf_recover_now(void);

typedef enum HfRecoverScope {
        HF_RECOVER_INCIDENT, /* --incident ID */
        HF_RECOVER_PROCESS,  /* --process PID --since TIME */
        HF_RECOVER_BEFORE,   /* --before TIME PATH... */
} HfRecoverScope;

typedef struct HfRecoverOptions {
        const char *state_dir; /* the sentinel's state folder (sentinel.db, recover journals) */
        HfRecoverScope scope;
        int64_t incident;
        pid_t pid;
        double since;  /* --process: Unix seconds */
        double before; /* --before: Unix seconds */
        char **paths;  /* --before: absolute paths (files or folders) */
        size_t n_paths;
        HfRepo *repo; /* the vault for the fallback; NULL: no fallback */
        bool dry_run; /* plan and print, change nothing */
        bool force;   /* also overwrite files changed after the incident by other processes */
        HfOutput out; /* json: JSON lines on stdout; quiet: summary only */
} HfRecoverOptions;

typedef struct HfRecoverResult {
        int64_t incident;
        uint64_t files;            /* originals the scope touched */
        uint64_t from_preimage;    /* content put back from a pre-image */
        uint64_t from_pin;         /* from a hard-link pin (deleted, unchanged) */
        uint64_t renamed_back;     /* renamed by the attacker, content unchanged */
        uint64_t folders;          /* folders renamed by the attacker, renamed back */
        uint64_t folders_made;     /* folders the attacker removed, made again */
        uint64_t folders_removed;  /* empty folders the attacker made, removed */
        uint64_t from_vault;       /* from the latest snapshot before the incident */
        uint64_t already;          /* already in place (a rerun) */
        uint64_t removed;          /* files the attacker created, removed */
        uint64_t kept;             /* changed after the incident by another process: left alone */
        uint64_t lost, lost_bytes; /* no source at all */
        uint64_t unproven, unproven_bytes; /* from the vault, pre-attack value not provable */
        uint64_t failed;
        uint64_t bytes; /* bytes written */
        double seconds;
} HfRecoverResult;

/*
 * Recovers the scope. Returns 0 when every file is back and verified, HF_INCOMPLETE when some
 * could not be (lost, unproven vault content, failures: all listed), -ENOENT for an unknown
 * incident or a missing database (logged), other negative errnos for failures.
 * Idempotent and crash-safe: a rerun after kill -9 completes the work (journal under
 * state_dir/recover/).
 */
int hf_recover(const HfRecoverOptions *o, HfRecoverResult *ret);

/*
 * Times for --since/--before: Unix seconds ("1764216000.25"), RFC 3339, "YYYY-MM-DD HH:MM[:SS]"
 * (local time) or relative to now ("-90s", "-15m", "-2h", "-1d"). -EINVAL otherwise. Fuzzed.
 */
int hf_recover_parse_time(const char *s, size_t n, double now, double *ret);

/* ---- retention (recover/prune.c; the policy is the sentinel's retention.h) ---- */

typedef struct HfPruneOptions {
        const char *state_dir;
        HfRepo *repo;     /* mark pre-images the vault holds (NULL: skip) */
        double window;    /* seconds (0: the default, 24 h) */
        double max_share; /* of the filesystem (0: the default, 10 %) */
        bool dry_run;
        HfOutput out;
} HfPruneOptions;

/*
 * `holdfast recover --prune`: marks the pre-images whose exact content a vault snapshot holds
 * (chunk IDs compared with the vault's own chunker), then, when no sentinel is running,
 * releases what the retention policy allows (a running sentinel releases them itself: a
 * deletion in the shadow store by another process is a self-protection verdict).
 */
int hf_recover_prune(const HfPruneOptions *o);

/* ---- the recover journal (recover/journal.c, fuzzed) ---- */

typedef enum HfJournalVerb {
        HF_JOURNAL_DONE = 'D',    /* an original is back at path, with this content hash */
        HF_JOURNAL_REMOVED = 'R', /* an attacker file was removed from path */
        HF_JOURNAL_KEPT = 'K',    /* path left alone (changed by another process) */
} HfJournalVerb;

typedef struct HfJournalEntry {
        HfJournalVerb verb;
        char sha256[65]; /* "" when none */
        char *path;
} HfJournalEntry;

typedef struct HfJournal {
        HfJournalEntry *v;
        size_t n;
        bool complete; /* the run that wrote it finished */
        double began;
} HfJournal;

void hf_journal_done(HfJournal *j);
/* Parses a journal; lines that are torn (a crash mid-write) or malformed are skipped, an
 * unknown header is -EPROTO. Every byte may be hostile. */
int hf_journal_parse(const char *text, size_t n, HfJournal *ret);
/* One journal line for (verb, sha, path), path escaped. */
int hf_journal_format(HfBuf *out, HfJournalVerb verb, const char *sha, const char *path);
/* The last entry for path (NULL when none). */
const HfJournalEntry *hf_journal_find(const HfJournal *j, const char *path);

/* ---- the attack simulator (sandbox only) ---- */

/*
 * A sandbox is a folder the simulator created itself: it holds `.holdfast-sandbox`, a token
 * bound to the folder's device and inode with a random nonce, and the list of files the
 * simulator wrote there. The simulator refuses any folder without a valid token and only
 * ever touches the listed files (opened beneath the folder, no symlinks followed).
 */
#define HF_SANDBOX_TOKEN ".holdfast-sandbox"

typedef struct HfSandboxToken {
        char nonce[33];
        uint64_t dev, ino;
        char *disk;   /* loop device attached to disk.img, NULL when none */
        char **files; /* relative paths */
        size_t n_files;
} HfSandboxToken;

void hf_sandbox_token_done(HfSandboxToken *t);
/* Parses the token text. -EPROTO when malformed. Fuzzed. */
int hf_sandbox_token_parse(const char *text, size_t n, HfSandboxToken *ret);

typedef struct HfSimPrepareOptions {
        unsigned scale;     /* 1: about a hundred files, ~6 MB */
        bool disk;          /* also a small disk image attached to a loop device (root) */
        unsigned files;     /* instead of the sample tree: this many text files (benchmarks) */
        unsigned file_size; /* their size (default 16 KiB) */
} HfSimPrepareOptions;

/* Creates dir (which must not exist) with a sample tree of a public service: documents,
 * images, a SQLite database, logs, a web root. */
int hf_sim_prepare(const char *dir, const HfSimPrepareOptions *o);
/* Validates the sandbox and loads its token (refuses anything else, naming why). */
int hf_sim_open(const char *dir, HfSandboxToken *ret);
/* Detaches the sandbox's loop device (if any). */
int hf_sim_cleanup(const char *dir);

typedef struct HfSimAttackOptions {
        double interval;    /* "slow": seconds between files (default 5) */
        unsigned max_files; /* 0: every listed file */
        bool quiet;
} HfSimAttackOptions;

typedef struct HfSimResult {
        uint64_t files;     /* files it destroyed (completely) */
        uint64_t bytes;     /* bytes it overwrote */
        uint64_t created;   /* files it created (copies, notes) */
        uint64_t denied;    /* operations the system refused */
        double first, last; /* Unix time of the first and last destructive act */
} HfSimResult;

/* The attack kinds, NULL-terminated. */
extern const char *const hf_sim_kinds[];
bool hf_sim_kind_valid(const char *kind);
/* What a kind does, one line. */
const char *hf_sim_kind_help(const char *kind);
/*
 * Runs one attack on the sandbox dir in this process (the caller makes it the process, or
 * session, to be stopped). Prints one JSON line with the result on stdout at the end.
 */
int hf_sim_attack(const char *dir, const char *kind, const HfSimAttackOptions *o, HfSimResult *ret);

/* ---- drill ---- */

typedef struct HfDrillOptions {
        char **attacks; /* kinds; NULL/0: the default set */
        size_t n_attacks;
        bool keep;           /* keep the scratch folder */
        const char *scratch; /* parent of the scratch folder (default $TMPDIR or /var/tmp) */
        const char *fs;      /* xfs (default), ext4, btrfs: the loop image's filesystem */
        const char *self;    /* path of the holdfast binary */
        bool decoys;         /* plant decoys (most attacks then stop at the first file) */
        HfOutput out;
} HfDrillOptions;

/* 0 when nothing was lost, HF_INCOMPLETE when something was, negative errno on failure. */
int hf_drill(const HfDrillOptions *o);
