#include "backends/redis/scripts.h"

#include <string>

namespace mailfs::redis::scripts {
namespace {

// Shared by every script (Redis 7 runs Lua 5.1 with cmsgpack).
constexpr const char* kPrelude = R"lua(
local function fail(text) return redis.error_reply(text) end

-- The error text when a key exists with another type than expected
-- (`list` holds key, type, key, type...). Each key is probed with a cheap
-- read of that type, which fails on any other; TYPE answers a table, which
-- costs Lua twice as much, and a script checks up to twenty keys.
local probes = {string = 'STRLEN', hash = 'HLEN', zset = 'ZCARD', set = 'SCARD', list = 'LLEN',
                stream = 'XLEN'}
local function check_types(list)
  for i = 1, #list, 2 do
    local answer = redis.pcall(probes[list[i + 1]], list[i])
    if type(answer) == 'table' and answer.err then
      local actual = redis.call('TYPE', list[i])['ok']
      return 'CORRUPT ' .. list[i] .. ' is a ' .. actual .. ', not a ' .. list[i + 1]
    end
  end
  return nil
end

local function check_number(key)
  local value = redis.call('GET', key)
  if value and not tonumber(value) then return 'CORRUPT ' .. key .. ' is not a number' end
  return nil
end

-- pymap removes a deleted mailbox from `order` and `mailboxes` together;
-- an INBOX that pymap's rename made is only in `mailboxes`.
local function is_live(mailboxes_key, order_key, mailbox_id)
  if redis.call('ZSCORE', order_key, mailbox_id) then return true end
  for _, id in ipairs(redis.call('HVALS', mailboxes_key)) do
    if id == mailbox_id then return true end
  end
  return false
end

-- pymap's MOVE leaves '<ms>-0' ids above its own modseq counter, after
-- which no '<modseq>-1' id can be added: lift the counter above the top
-- of every stream this script will add to, so that its ids (and pymap's
-- after it) are valid again.
local function prepare_modseq(max_modseq_key, streams)
  local current = tonumber(redis.call('GET', max_modseq_key) or '0')
  if not current then return 'CORRUPT ' .. max_modseq_key .. ' is not a number' end
  local top = current
  for _, stream in ipairs(streams) do
    local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    if #last > 0 then
      local ms = tonumber(string.match(last[1][1], '^(%d+)%-'))
      if ms and ms > top then top = ms end
    end
  end
  if top > current then redis.call('SET', max_modseq_key, string.format('%d', top)) end
  return nil
end

local function add_change(changes_key, max_modseq_key, ...)
  local modseq = redis.call('INCR', max_modseq_key)
  local id = string.format('%d-1', modseq)
  redis.call('XADD', changes_key, 'MAXLEN', '~', 1000, id, ...)
  return id
end

local function decode_record(bytes)
  local ok, record = pcall(cmsgpack.unpack, bytes)
  if not ok or type(record) ~= 'table' or type(record['flags']) ~= 'table' then return nil end
  return record
end

local function flag_state(flags)
  local deleted, seen = false, false
  for _, flag in ipairs(flags) do
    if flag == '\\Deleted' then deleted = true elseif flag == '\\Seen' then seen = true end
  end
  return deleted, seen
end

-- Indexes a message under `uid` in a mailbox: seq, content, recent,
-- deleted, unseen.
local function index_message(k, uid, email_id, flags, recent)
  redis.call('ZADD', k.seq, uid, uid)
  if email_id then redis.call('HSET', k.content, uid, email_id) end
  local deleted, seen = flag_state(flags)
  if recent then redis.call('SADD', k.recent, uid) end
  if deleted then redis.call('SADD', k.deleted, uid) end
  if not seen then redis.call('ZADD', k.unseen, uid, uid) end
end

local function unindex_message(k, uid)
  redis.call('HDEL', k.uids, uid)
  redis.call('ZREM', k.seq, uid)
  redis.call('HDEL', k.content, uid)
  redis.call('SREM', k.recent, uid)
  redis.call('SREM', k.deleted, uid)
  redis.call('ZREM', k.unseen, uid)
end

local function mailbox_types(k)
  return {k.max_uid, 'string', k.uids, 'hash', k.seq, 'zset', k.content, 'hash',
          k.changes, 'stream', k.recent, 'set', k.deleted, 'set', k.unseen, 'zset'}
end

local function append_all(list, more)
  for _, v in ipairs(more) do table.insert(list, v) end
  return list
end

-- The eight keys of a mailbox, from KEYS[first].
local function mailbox_keys(first)
  return {max_uid = KEYS[first], uids = KEYS[first + 1], seq = KEYS[first + 2],
          content = KEYS[first + 3], changes = KEYS[first + 4], recent = KEYS[first + 5],
          deleted = KEYS[first + 6], unseen = KEYS[first + 7]}
end
)lua";

// KEYS: mailbox keys (1-8), max_modseq, thread_keys, content_refs,
// content data, mailboxes, order, staged content.
// ARGV: recent, flags (msgpack), date, email id, thread id, thread keys
// (msgpack), mailbox id, length of the message.
// Returns {uid, email id, thread id, changes stream id}.
//
// The message's content hash (full, full-json, header, header-json) comes
// staged: the same MULTI wrote it under a key of its own, with a TTL, just
// before this script. Its bytes never pass through Lua (Redis's Lua hashes
// every byte of every string it makes, which cost more than the rest of
// an append): a new content hash is renamed into place, and for content
// already stored the bytes are compared only when the lengths agree (the
// same message appended again). COLLISION when other bytes are stored
// under this email id: checked here, so an append is one round trip and
// no other writer can store other bytes under the id in between. The
// staged key is gone when the script ends, whatever happened.
constexpr const char* kMessageAdd = R"lua(
local k = mailbox_keys(1)
local max_modseq, thread_keys, refs_key, data_key, mailboxes, order, staged =
  KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15]
local consumed = false

local function add()
  local problem = check_types(append_all(mailbox_types(k), {max_modseq, 'string',
    thread_keys, 'hash', refs_key, 'hash', data_key, 'hash', mailboxes, 'hash', order, 'zset',
    staged, 'hash'})) or check_number(k.max_uid)
  if problem then return fail(problem) end
  if redis.call('HEXISTS', staged, 'full') == 0 then
    return fail('CORRUPT ' .. staged .. ' is missing')
  end
  if not is_live(mailboxes, order, ARGV[7]) then return fail('NOMAILBOX') end
  local email_id = ARGV[4]
  local refs = redis.call('HGET', refs_key, email_id)
  if refs and not tonumber(refs) then return fail('CORRUPT ' .. refs_key .. ' ' .. email_id) end
  local stored = redis.call('HEXISTS', data_key, 'full') == 1
  if stored and (redis.call('HSTRLEN', data_key, 'full') ~= tonumber(ARGV[8]) or
                 redis.call('HGET', data_key, 'full') ~= redis.call('HGET', staged, 'full')) then
    return fail('COLLISION')
  end
  local flags = cmsgpack.unpack(ARGV[2])
  local keys = cmsgpack.unpack(ARGV[6])
  -- Two calls for the thread keys, not two per key (a few hundred at a
  -- time: unpack has a limit).
  local known = {}
  for first = 1, #keys, 500 do
    local last = math.min(first + 499, #keys)
    local chunk = redis.call('HMGET', thread_keys, unpack(keys, first, last))
    for i = 1, #chunk do known[first + i - 1] = chunk[i] end
  end
  problem = prepare_modseq(max_modseq, {k.changes})
  if problem then return fail(problem) end

  local uid = redis.call('INCR', k.max_uid)
  redis.call('HINCRBY', refs_key, email_id, 1)
  if stored then
    redis.call('PERSIST', data_key)
  elseif redis.call('EXISTS', data_key) == 1 then
    -- A content hash without `full` (nobody writes one): its four fields
    -- are set and the others kept, as HSET would.
    redis.call('HSET', data_key, unpack(redis.call('HGETALL', staged)))
  else
    redis.call('RENAME', staged, data_key)
    redis.call('PERSIST', data_key)
    consumed = true
  end
  -- The thread of the first key already known, else a new one; then every
  -- key names it.
  local thread_id = ARGV[5]
  for i = 1, #keys do
    if known[i] then thread_id = known[i] break end
  end
  for first = 1, #keys, 500 do
    local fields = {}
    for i = first, math.min(first + 499, #keys) do
      fields[#fields + 1] = keys[i]
      fields[#fields + 1] = thread_id
    end
    redis.call('HSET', thread_keys, unpack(fields))
  end

  local record = cmsgpack.pack({flags = flags, date = ARGV[3], email_id = email_id,
                                thread_id = thread_id})
  redis.call('HSET', k.uids, uid, record)
  index_message(k, uid, email_id, flags, ARGV[1] == '1')
  local change = add_change(k.changes, max_modseq, 'uid', uid, 'type', 'fetch', 'message', record)
  return {uid, email_id, thread_id, change}
end

local ok, result = pcall(add)
if not consumed then redis.call('DEL', staged) end
if not ok then
  return fail(type(result) == 'table' and tostring(result.err) or tostring(result))
end
return result
)lua";

// KEYS: source mailbox keys (1-8), destination mailbox keys (9-16),
// max_modseq, content_refs, mailboxes, order.
// ARGV: uid, recent, source id, destination id, content key prefix, move (1/0).
// Returns {new uid, destination stream id, source stream id or ''}.
constexpr const char* kMessageCopy = R"lua(
local src = mailbox_keys(1)
local dst = mailbox_keys(9)
local max_modseq, refs_key, mailboxes, order = KEYS[17], KEYS[18], KEYS[19], KEYS[20]
local move = ARGV[6] == '1'
local types = append_all(mailbox_types(src), mailbox_types(dst))
local problem = check_types(append_all(types, {max_modseq, 'string', refs_key, 'hash',
  mailboxes, 'hash', order, 'zset'})) or check_number(dst.max_uid)
if problem then return fail(problem) end
if not is_live(mailboxes, order, ARGV[3]) then return fail('NOMAILBOX source') end
if not is_live(mailboxes, order, ARGV[4]) then return fail('NOMAILBOX destination') end
local uid = ARGV[1]
local record_bytes = redis.call('HGET', src.uids, uid)
if not record_bytes then return fail('NOTFOUND') end
local record = decode_record(record_bytes)
if not record then return fail('CORRUPT ' .. src.uids .. ' ' .. uid) end
local email_id = record['email_id']
if type(email_id) ~= 'string' or email_id == '' then
  email_id = redis.call('HGET', src.content, uid)
end
if not move and email_id then
  local refs = redis.call('HGET', refs_key, email_id)
  if refs and not tonumber(refs) then return fail('CORRUPT ' .. refs_key .. ' ' .. email_id) end
end
problem = prepare_modseq(max_modseq, {src.changes, dst.changes})
if problem then return fail(problem) end

local src_change = ''
if move then
  unindex_message(src, uid)
  src_change = add_change(src.changes, max_modseq, 'uid', uid, 'type', 'expunge')
elseif email_id then
  redis.call('HINCRBY', refs_key, email_id, 1)
  redis.call('PERSIST', ARGV[5] .. email_id)
end
local new_uid = redis.call('INCR', dst.max_uid)
redis.call('HSET', dst.uids, new_uid, record_bytes)
index_message(dst, new_uid, email_id, record['flags'], ARGV[2] == '1')
local dst_change = add_change(dst.changes, max_modseq, 'uid', new_uid, 'type', 'fetch',
                              'message', record_bytes)
return {new_uid, dst_change, src_change}
)lua";

// KEYS: mailbox keys (1-8), max_modseq, mailboxes, order.
// ARGV: uid, mode (ADD, DELETE, REPLACE), flags (msgpack), mailbox id.
// Returns {the record as stored afterwards, stream id or '' if unchanged}.
constexpr const char* kMessageUpdate = R"lua(
local k = mailbox_keys(1)
local max_modseq, mailboxes, order = KEYS[9], KEYS[10], KEYS[11]
local problem = check_types(append_all(mailbox_types(k), {max_modseq, 'string',
  mailboxes, 'hash', order, 'zset'}))
if problem then return fail(problem) end
if not is_live(mailboxes, order, ARGV[4]) then return fail('NOMAILBOX') end
local uid = ARGV[1]
local record_bytes = redis.call('HGET', k.uids, uid)
if not record_bytes then return fail('NOTFOUND') end
local record = decode_record(record_bytes)
if not record then return fail('CORRUPT ' .. k.uids .. ' ' .. uid) end
local given = cmsgpack.unpack(ARGV[3])
local mode = ARGV[2]

local old_set, given_set = {}, {}
for _, flag in ipairs(record['flags']) do old_set[flag] = true end
for _, flag in ipairs(given) do given_set[flag] = true end
local new_flags = {}
if mode == 'REPLACE' then
  new_flags = given
else
  for _, flag in ipairs(record['flags']) do
    if mode == 'ADD' or not given_set[flag] then table.insert(new_flags, flag) end
  end
  if mode == 'ADD' then
    local added = {}
    for _, flag in ipairs(given) do
      if not old_set[flag] and not added[flag] then
        table.insert(new_flags, flag)
        added[flag] = true
      end
    end
  end
end
local new_set, changed = {}, false
for _, flag in ipairs(new_flags) do new_set[flag] = true end
for flag in pairs(new_set) do if not old_set[flag] then changed = true end end
for flag in pairs(old_set) do if not new_set[flag] then changed = true end end
if not changed then return {record_bytes, ''} end
problem = prepare_modseq(max_modseq, {k.changes})
if problem then return fail(problem) end

record['flags'] = new_flags
record_bytes = cmsgpack.pack(record)
redis.call('HSET', k.uids, uid, record_bytes)
local deleted, seen = flag_state(new_flags)
if deleted then redis.call('SADD', k.deleted, uid) else redis.call('SREM', k.deleted, uid) end
if seen then redis.call('ZREM', k.unseen, uid) else redis.call('ZADD', k.unseen, uid, uid) end
local change = add_change(k.changes, max_modseq, 'uid', uid, 'type', 'fetch', 'message',
                          record_bytes)
return {record_bytes, change}
)lua";

// KEYS: mailbox keys (1-8), max_modseq, cleanup content queue, mailboxes, order.
// ARGV: uids (msgpack), namespace, mailbox id.
// Returns {the UIDs expunged, their stream ids}.
constexpr const char* kMessageDelete = R"lua(
local k = mailbox_keys(1)
local max_modseq, cleanup, mailboxes, order = KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local problem = check_types(append_all(mailbox_types(k), {max_modseq, 'string',
  cleanup, 'list', mailboxes, 'hash', order, 'zset'}))
if problem then return fail(problem) end
if not is_live(mailboxes, order, ARGV[3]) then return fail('NOMAILBOX') end
local present = {}
for _, uid in ipairs(cmsgpack.unpack(ARGV[1])) do
  if redis.call('HEXISTS', k.uids, uid) == 1 then table.insert(present, uid) end
end
if #present == 0 then return {{}, {}} end
problem = prepare_modseq(max_modseq, {k.changes})
if problem then return fail(problem) end
local changes = {}
for _, uid in ipairs(present) do
  local email_id = redis.call('HGET', k.content, uid)
  if email_id then redis.call('RPUSH', cleanup, ARGV[2] .. '\0' .. email_id) end
  unindex_message(k, uid)
  table.insert(changes, add_change(k.changes, max_modseq, 'uid', uid, 'type', 'expunge'))
end
return {present, changes}
)lua";

// KEYS: recent, mailboxes, order. ARGV: mailbox id.
// Returns the UIDs that were recent; nobody else gets them.
constexpr const char* kClaimRecent = R"lua(
local problem = check_types({KEYS[1], 'set', KEYS[2], 'hash', KEYS[3], 'zset'})
if problem then return fail(problem) end
if not is_live(KEYS[2], KEYS[3], ARGV[1]) then return fail('NOMAILBOX') end
local uids = redis.call('SMEMBERS', KEYS[1])
if #uids > 0 then redis.call('DEL', KEYS[1]) end
return uids
)lua";

// KEYS: mailbox keys (1-8), mailboxes, order. ARGV: mailbox id.
// Returns {max uid, exists, recent, unseen, first unseen UID or 0}.
constexpr const char* kSnapshot = R"lua(
local k = mailbox_keys(1)
local problem = check_types(append_all(mailbox_types(k), {KEYS[9], 'hash', KEYS[10], 'zset'}))
  or check_number(k.max_uid)
if problem then return fail(problem) end
if not is_live(KEYS[9], KEYS[10], ARGV[1]) then return fail('NOMAILBOX') end
local first = redis.call('ZRANGE', k.unseen, 0, 0)
return {tonumber(redis.call('GET', k.max_uid) or '0'), redis.call('HLEN', k.uids),
        redis.call('SCARD', k.recent), redis.call('ZCARD', k.unseen), tonumber(first[1] or '0')}
)lua";

// KEYS: mailboxes, order, max-order, uidv. ARGV: name (mUTF-7), mailbox id.
constexpr const char* kMailboxAdd = R"lua(
local problem = check_types({KEYS[1], 'hash', KEYS[2], 'zset', KEYS[3], 'string', KEYS[4], 'hash'})
  or check_number(KEYS[3])
if problem then return fail(problem) end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return fail('EXISTS') end
local uidv = redis.call('HGET', KEYS[4], ARGV[1])
if uidv and not tonumber(uidv) then return fail('CORRUPT ' .. KEYS[4] .. ' ' .. ARGV[1]) end
local position = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], position, ARGV[2])
return redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
)lua";

// KEYS: mailboxes, order, cleanup mailbox queue.
// ARGV: name (mUTF-7), namespace, mailbox key prefix (up to the id), separator.
// Refuses a mailbox that holds messages or has children.
constexpr const char* kMailboxDelete = R"lua(
local problem = check_types({KEYS[1], 'hash', KEYS[2], 'zset', KEYS[3], 'list'})
if problem then return fail(problem) end
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return fail('NOTFOUND') end
local child_prefix = ARGV[1] .. '/'
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(name, 1, #child_prefix) == child_prefix then return fail('NOTEMPTY children') end
end
local uids = ARGV[3] .. id .. ARGV[4] .. 'uids'
local kind = redis.call('TYPE', uids)['ok']
if kind ~= 'none' and kind ~= 'hash' then return fail('CORRUPT ' .. uids .. ' is a ' .. kind) end
if redis.call('HLEN', uids) > 0 then return fail('NOTEMPTY messages') end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], id)
redis.call('RPUSH', KEYS[3], ARGV[2] .. '\0' .. id)
return id
)lua";

// KEYS: mailboxes, uidv, order, max-order, subscribed.
// ARGV: n, then n triples (name before, name after, mailbox id expected
// under the name before), then a new INBOX id or '', then m, then m pairs
// of subscription members (before, after).
constexpr const char* kMailboxRename = R"lua(
local problem = check_types({KEYS[1], 'hash', KEYS[2], 'hash', KEYS[3], 'zset',
  KEYS[4], 'string', KEYS[5], 'set'}) or check_number(KEYS[4])
if problem then return fail(problem) end
local n = tonumber(ARGV[1])
local moving = {}
for i = 0, n - 1 do
  local before, id = ARGV[2 + 3 * i], ARGV[4 + 3 * i]
  if redis.call('HGET', KEYS[1], before) ~= id then return fail('CHANGED') end
  moving[before] = true
end
for i = 0, n - 1 do
  local after = ARGV[3 + 3 * i]
  if not moving[after] and redis.call('HEXISTS', KEYS[1], after) == 1 then
    return fail('EXISTS')
  end
end
local validities = {}
for i = 0, n - 1 do
  local before, after = ARGV[2 + 3 * i], ARGV[3 + 3 * i]
  local old = tonumber(redis.call('HGET', KEYS[2], before) or '1')
  local used = redis.call('HGET', KEYS[2], after)
  if (used and not tonumber(used)) or not old then return fail('CORRUPT ' .. KEYS[2]) end
  -- The name after may have meant another mailbox before: its UIDVALIDITY
  -- must grow; otherwise the mailbox keeps its own.
  local validity = old
  if used and tonumber(used) + 1 > validity then validity = tonumber(used) + 1 end
  validities[i] = validity
end
for i = 0, n - 1 do redis.call('HDEL', KEYS[1], ARGV[2 + 3 * i]) end
for i = 0, n - 1 do
  local after, id = ARGV[3 + 3 * i], ARGV[4 + 3 * i]
  redis.call('HSET', KEYS[1], after, id)
  redis.call('HSET', KEYS[2], after, string.format('%d', validities[i]))
end
local inbox_id = ARGV[2 + 3 * n]
if inbox_id ~= '' then
  local position = redis.call('INCR', KEYS[4])
  redis.call('HSET', KEYS[1], 'INBOX', inbox_id)
  redis.call('ZADD', KEYS[3], position, inbox_id)
  redis.call('HINCRBY', KEYS[2], 'INBOX', 1)
end
local m = tonumber(ARGV[3 + 3 * n])
for i = 0, m - 1 do
  local before, after = ARGV[4 + 3 * n + 2 * i], ARGV[5 + 3 * n + 2 * i]
  if redis.call('SREM', KEYS[5], before) == 1 then redis.call('SADD', KEYS[5], after) end
end
return 'OK'
)lua";

// pymap's cleanup, one queue entry per call, popped and applied in one
// step so that a crash never loses an entry half done.
// KEYS: cleanup mailbox queue, cleanup content queue.
// ARGV: namespace root prefix ('/mail/ns/'), separator, mailbox TTL, content TTL.
// Returns 1 if it did something, 0 when both queues are empty.
constexpr const char* kCleanupOne = R"lua(
local problem = check_types({KEYS[1], 'list', KEYS[2], 'list'})
if problem then return fail(problem) end
local sep = ARGV[2]
local entry = redis.call('LPOP', KEYS[1])
if entry then
  local ns, id = string.match(entry, '^([^%z]*)%z(.*)$')
  if not ns then return 1 end
  local root = ARGV[1] .. ns .. sep .. 'mbx' .. sep .. id .. sep
  local content = root .. 'content'
  if redis.call('TYPE', content)['ok'] == 'hash' then
    for _, email_id in ipairs(redis.call('HVALS', content)) do
      redis.call('RPUSH', KEYS[2], ns .. '\0' .. email_id)
    end
  end
  for _, name in ipairs({'max-uid', 'uids', 'seq', 'content', 'changes', 'recent', 'deleted',
                         'unseen'}) do
    redis.call('EXPIRE', root .. name, ARGV[3])
  end
  return 1
end
entry = redis.call('LPOP', KEYS[2])
if not entry then return 0 end
local ns, email_id = string.match(entry, '^([^%z]*)%z(.*)$')
if not ns then return 1 end
local refs_key = ARGV[1] .. ns .. sep .. 'contentrefs'
if redis.call('TYPE', refs_key)['ok'] ~= 'hash' then return 1 end
if not tonumber(redis.call('HGET', refs_key, email_id) or '0') then return 1 end
if redis.call('HINCRBY', refs_key, email_id, -1) <= 0 then
  redis.call('EXPIRE', ARGV[1] .. ns .. sep .. 'content' .. sep .. email_id, ARGV[4])
end
return 1
)lua";

const Script& Make(const char* name, const char* body) {
  // Leaked on purpose: scripts live for the whole process.
  return *new Script(Script::Make(name, std::string(kPrelude) + body));
}

}  // namespace

const Script& MessageAdd() {
  static const Script& script = Make("message_add", kMessageAdd);
  return script;
}
const Script& MessageCopy() {
  static const Script& script = Make("message_copy", kMessageCopy);
  return script;
}
const Script& MessageMove() { return MessageCopy(); }
const Script& MessageUpdate() {
  static const Script& script = Make("message_update", kMessageUpdate);
  return script;
}
const Script& MessageDelete() {
  static const Script& script = Make("message_delete", kMessageDelete);
  return script;
}
const Script& ClaimRecent() {
  static const Script& script = Make("claim_recent", kClaimRecent);
  return script;
}
const Script& Snapshot() {
  static const Script& script = Make("snapshot", kSnapshot);
  return script;
}
const Script& MailboxAdd() {
  static const Script& script = Make("mailbox_add", kMailboxAdd);
  return script;
}
const Script& MailboxDelete() {
  static const Script& script = Make("mailbox_delete", kMailboxDelete);
  return script;
}
const Script& MailboxRename() {
  static const Script& script = Make("mailbox_rename", kMailboxRename);
  return script;
}
const Script& CleanupOne() {
  static const Script& script = Make("cleanup_one", kCleanupOne);
  return script;
}

std::vector<const Script*> All() {
  return {&MessageAdd(), &MessageCopy(), &MessageUpdate(), &MessageDelete(), &ClaimRecent(),
          &Snapshot(),   &MailboxAdd(),  &MailboxDelete(), &MailboxRename(), &CleanupOne()};
}

}  // namespace mailfs::redis::scripts
