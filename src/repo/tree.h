/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Tree blobs (restic-format.md §6.3, §6.4): a directory's nodes, sorted by raw name bytes, as
 * JSON that matches Go's encoder byte for byte so identical folders hash identically in
 * holdfast and restic.
 */

#include "../base/buf.h"
#include "../base/gojson.h"
#include "../base/util.h"

typedef enum HfNodeType {
        HF_NODE_FILE,
        HF_NODE_DIR,
        HF_NODE_SYMLINK,
        HF_NODE_DEV, /* block device */
        HF_NODE_CHARDEV,
        HF_NODE_FIFO,
        HF_NODE_SOCKET,
        HF_NODE_IRREGULAR,
        _HF_NODE_TYPE_MAX,
} HfNodeType;

const char *hf_node_type_name(HfNodeType t);
int hf_node_type_from_name(const char *s, HfNodeType *ret);

/* Go fs.FileMode bits that restic stores. */
#define HF_GOMODE_DIR (1u << 31)
#define HF_GOMODE_SYMLINK (1u << 27)
#define HF_GOMODE_DEVICE (1u << 26)
#define HF_GOMODE_NAMEDPIPE (1u << 25)
#define HF_GOMODE_SOCKET (1u << 24)
#define HF_GOMODE_SETUID (1u << 23)
#define HF_GOMODE_SETGID (1u << 22)
#define HF_GOMODE_CHARDEVICE (1u << 21)
#define HF_GOMODE_STICKY (1u << 20)
#define HF_GOMODE_IRREGULAR (1u << 19)

/* POSIX st_mode -> Go FileMode as restic stores it, and back (type bits from the node type). */
uint32_t hf_mode_to_go(uint32_t st_mode);
uint32_t hf_mode_from_go(uint32_t gomode);

typedef struct HfXattr {
        char *name;
        uint8_t *value;
        size_t len;
} HfXattr;

typedef struct HfNode {
        char *name; /* raw bytes, NUL-terminated (names never contain NUL) */
        size_t name_len;
        HfNodeType type;
        uint32_t mode; /* Go FileMode */
        HfTime mtime, atime, ctime;
        uint32_t uid, gid;
        char *user, *group; /* NULL when empty */
        uint64_t inode, device_id, size, links, device;
        char *linktarget; /* raw bytes, NULL when none */
        size_t linktarget_len;
        HfXattr *xattrs;
        size_t n_xattrs;
        HfId *content; /* files: data blob IDs; NULL with n_content 0 means [] for files */
        size_t n_content;
        bool has_subtree;
        HfId subtree;
        char *error;
} HfNode;

void hf_node_done(HfNode *n);
/* Deep copy. */
int hf_node_copy(const HfNode *src, HfNode *dst);
int hf_node_set_name(HfNode *n, const char *name, size_t len);
/* Adds an xattr (copies name and value). */
int hf_node_add_xattr(HfNode *n, const char *name, const void *value, size_t len);

typedef struct HfTree {
        HfNode *nodes;
        size_t n, cap;
} HfTree;

void hf_tree_done(HfTree *t);
/* Appends a zeroed node and returns it. */
int hf_tree_add(HfTree *t, HfNode **ret);
/* Sorts nodes by raw name; -EEXIST when two share a name. */
int hf_tree_sort(HfTree *t);
/* Binary search by raw name (sorted trees only). */
const HfNode *hf_tree_find(const HfTree *t, const char *name, size_t len);

/* The tree blob bytes for sorted nodes: {"nodes":[...]}\n exactly as restic writes them. */
int hf_tree_format(const HfTree *t, HfBuf *out);
/* One node's JSON (as in a tree blob). */
int hf_node_format(const HfNode *n, HfBuf *out);
/*
 * Parses a tree blob; -EPROTO with a sentence in err for malformed JSON, a node without name
 * or type, unknown types, bad IDs, or bad times. Unknown fields are ignored.
 */
int hf_tree_parse(const void *json, size_t n, HfTree *ret, HfBuf *err);

/* Go's FileMode.String() of a stored mode ("-rw-r--r--", "dtrwxrwxrwx"), as restic prints it. */
#define HF_MODE_STRING_MAX 24
void hf_mode_string(uint32_t gomode, HfNodeType t, char out[HF_MODE_STRING_MAX]);
