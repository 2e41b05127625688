-- deliver: reading text in Argo CD's Lua (inlined where a script says `-- #include json.lua`;
-- `python -m e2e.argocd` renders the files of gitops/argocd from them).
--
-- Argo CD runs argocd-cm scripts with only the base, table and package libraries and a cut-down os
-- (argoproj/argo-cd util/lua/lua.go): no `string`, no `math`, and strings have no methods. What is
-- left to read a string with is its length (#) and comparison (<, <=), so a byte is found by a
-- binary search: the next byte of `text` after the `known` prefix is the largest b with
-- known .. BYTE[b] <= text. Each probe costs the length of the prefix, so reading n bytes costs
-- about n * n * 9 byte steps: the reader reads only as far as it must, takes the parts of a
-- nested value that the object itself also holds (a pod template's keys and strings) as whole
-- tokens, and stops at a budget of work.

-- BYTE[b]: the one-byte string of byte value b (0..255), made by the compiler from "\b" escapes
-- when first needed (a Deployment deliver does not manage never needs it).
local BYTE = setmetatable({}, {
  __index = function(bytes, wanted)
    local items = {}
    for b = 0, 255 do
      items[b + 1] = '"\\' .. b .. '"'
    end
    local made = loadstring("return {" .. table.concat(items, ",") .. "}")()
    for b = 0, 255 do
      rawset(bytes, b, made[b + 1])
    end
    setmetatable(bytes, nil)
    return rawget(bytes, wanted)
  end,
})

-- The strings of list joined (table.concat puts every item on gopher-lua's data stack, which
-- holds 5120: a long list is joined in pieces).
local function join(list)
  if #list <= 200 then return table.concat(list) end
  local pieces = {}
  for first = 1, #list, 200 do
    local last = first + 199
    if last > #list then last = #list end
    table.insert(pieces, table.concat(list, "", first, last))
  end
  return join(pieces)
end

-- A cursor over text. budget: the byte steps its probes may take in all (a probe takes as many as
-- the bytes read so far); going over raises {json = ..., long = true}.
local function cursor(text, budget)
  return { text = text, known = "", at = 0, size = #text, budget = budget or 1e12, work = 0 }
end

-- Count a probe's work; raise when the budget is spent.
local function charge(c, probes)
  c.work = c.work + probes * (c.at + 8)
  if c.work > c.budget then
    error({ json = "the reader's budget ran out after " .. c.at .. " bytes", long = true })
  end
end

local function fail(c, what)
  error({ json = what .. " at byte " .. (c.at + 1) })
end

-- The next byte's value (not taken), or nil at the end. `guess` is where the search splits first:
-- a right guess costs two probes instead of eight.
local function peek(c, guess)
  if c.next ~= nil then return c.next end
  if c.at >= c.size then return nil end
  charge(c, 9)
  local known, text = c.known, c.text
  local lo, hi = 0, 255
  if guess ~= nil then
    if known .. BYTE[guess] <= text then
      lo = guess
      if guess == 255 or text < known .. BYTE[guess + 1] then hi = guess end
    else
      hi = guess - 1
    end
  end
  while lo < hi do
    local mid = lo + hi + 1
    mid = (mid - mid % 2) / 2
    if known .. BYTE[mid] <= text then lo = mid else hi = mid - 1 end
  end
  c.next = lo
  return lo
end

-- Take the next byte (after peek).
local function take(c)
  local b = peek(c)
  if b == nil then fail(c, "unexpected end") end
  c.known = c.known .. BYTE[b]
  c.at = c.at + 1
  c.next = nil
  return b
end

-- The bytes of a short string (at most limit), as a list of numbers, or nil if it is longer.
local function bytes_of(text, limit)
  if #text > limit then return nil end
  local c, list = cursor(text), {}
  while peek(c) ~= nil do
    table.insert(list, take(c))
  end
  return list
end

-- A token to look for whole: its text and the least string above every text starting with it
-- (the text with its last byte one higher, given as `above`).
local function token(text, above)
  return { text = text, above = above }
end

-- Whether the text goes on with tok at the cursor; if so, take it (two probes, whatever its length).
local function skip(c, tok)
  local known = c.known
  local with = known .. tok.text
  charge(c, 2)
  if #with > c.size or with > c.text or c.text >= known .. tok.above then return false end
  c.known, c.at, c.next = with, c.at + #tok.text, nil
  return true
end

-- The token of dict (a list sorted by text, no token a prefix of another) that the text goes on
-- with at the cursor, taken; or nil. A binary search: about log2(#dict) + 1 probes.
local function lookup(c, dict)
  if dict == nil or #dict == 0 then return nil end
  local known, text = c.known, c.text
  local lo, hi = 0, #dict
  while lo < hi do
    local mid = lo + hi + 1
    mid = (mid - mid % 2) / 2
    charge(c, 1)
    if known .. dict[mid].text <= text then lo = mid else hi = mid - 1 end
  end
  if lo == 0 then return nil end
  local tok = dict[lo]
  charge(c, 1)
  if text >= known .. tok.above then return nil end
  c.known, c.at, c.next = known .. tok.text, c.at + #tok.text, nil
  return tok
end

-- Tokens for reading a record's nested values (its templates are pod templates, like obj's own):
-- every key of obj as `"key":` and every short string of obj as `"string"`, sorted.
local function dictionary(root)
  local keys, strings, seen, count = {}, {}, {}, 0
  local function add(list, text, above, value)
    if seen[text] == nil then
      seen[text] = true
      table.insert(list, { text = text, above = above, value = value })
    end
  end
  local function walk(value, depth)
    for k, item in pairs(value) do
      count = count + 1
      if count > 4000 or depth > 32 then return end
      if type(k) == "string" and #k <= 256 then add(keys, '"' .. k .. '":', '"' .. k .. '";', k) end
      if type(item) == "string" and #item <= 256 then
        add(strings, '"' .. item .. '"', '"' .. item .. "#", item)
      elseif type(item) == "table" then
        walk(item, depth + 1)
      end
    end
  end
  walk(root, 0)
  local function by_text(a, b) return a.text < b.text end
  table.sort(keys, by_text)
  table.sort(strings, by_text)
  return { keys = keys, strings = strings }
end

local WHITE = { [32] = true, [9] = true, [10] = true, [13] = true }
local QUOTE, BACKSLASH, COMMA, COLON = 34, 92, 44, 58
local ESCAPED = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n", [114] = "\r", [116] = "\t" }
local HEX = {}
for b = 48, 57 do HEX[b] = b - 48 end
for b = 65, 70 do HEX[b] = b - 55 end
for b = 97, 102 do HEX[b] = b - 87 end
local NUMBER = { [45] = true, [43] = true, [46] = true, [101] = true, [69] = true }
for b = 48, 57 do NUMBER[b] = true end
local TRUE, FALSE, NULL = token("true", "truf"), token("false", "falsf"), token("null", "nulm")

local function floor(x) return x - x % 1 end

-- The UTF-8 bytes of a code point, as a string.
local function utf8(code)
  if code < 0x80 then return BYTE[code] end
  if code < 0x800 then return BYTE[0xC0 + floor(code / 0x40)] .. BYTE[0x80 + code % 0x40] end
  if code < 0x10000 then
    return BYTE[0xE0 + floor(code / 0x1000)] .. BYTE[0x80 + floor(code / 0x40) % 0x40] .. BYTE[0x80 + code % 0x40]
  end
  return BYTE[0xF0 + floor(code / 0x40000)] .. BYTE[0x80 + floor(code / 0x1000) % 0x40] ..
      BYTE[0x80 + floor(code / 0x40) % 0x40] .. BYTE[0x80 + code % 0x40]
end

local function space(c, guess)
  while WHITE[peek(c, guess)] do take(c) end
  return peek(c, guess)
end

local function hex4(c)
  local code = 0
  for _ = 1, 4 do
    local digit = HEX[peek(c, 48)]
    if digit == nil then fail(c, "bad \\u escape") end
    take(c)
    code = code * 16 + digit
  end
  return code
end

-- A JSON string at the cursor (the opening quote not yet taken).
local function read_string(c)
  take(c)
  local parts = {}
  while true do
    local b = peek(c, 97)
    if b == nil then fail(c, "unterminated string") end
    take(c)
    if b == QUOTE then return join(parts) end
    if b < 32 then fail(c, "control character in a string") end
    if b == BACKSLASH then
      local e = peek(c, 110)
      if e == nil then fail(c, "unterminated string") end
      take(c)
      if e == 117 then -- \uXXXX, and a surrogate pair
        local code = hex4(c)
        if code >= 0xD800 and code <= 0xDBFF and peek(c, BACKSLASH) == BACKSLASH then
          take(c)
          if peek(c, 117) ~= 117 then fail(c, "bad \\u escape") end
          take(c)
          local low = hex4(c)
          if low < 0xDC00 or low > 0xDFFF then fail(c, "bad surrogate pair") end
          code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
        end
        table.insert(parts, utf8(code))
      elseif ESCAPED[e] ~= nil then
        table.insert(parts, ESCAPED[e])
      else
        fail(c, "bad escape")
      end
    else
      table.insert(parts, BYTE[b])
    end
  end
end

local read_value

local function read_number(c)
  local parts = {}
  while NUMBER[peek(c, 48)] do
    table.insert(parts, BYTE[take(c)])
  end
  local number = tonumber(join(parts))
  if number == nil then fail(c, "bad number") end
  return number
end

-- The members of an object (the opening brace not yet taken). keys: tokens to try first for each
-- key, in the order expected (deliver writes its record with sorted keys); stop(object, key, sorted),
-- asked at each key before its value: whether enough is read (the rest is then not read).
local function read_object(c, depth, keys, stop)
  take(c)
  local result, last, sorted, tried = {}, nil, true, 1
  if space(c, QUOTE) == 125 then
    take(c)
    return result, true
  end
  while true do
    if space(c, QUOTE) ~= QUOTE then fail(c, "expected a key") end
    local key
    if keys ~= nil then
      for i = tried, #keys do
        if skip(c, keys[i].token) then
          key, tried = keys[i].name, i + 1
          break
        end
      end
    elseif depth > 0 and c.dict ~= nil then
      local tok = lookup(c, c.dict.keys)
      if tok ~= nil then key = tok.value end
    end
    if key == nil then
      key = read_string(c)
      if space(c, COLON) ~= COLON then fail(c, "expected ':'") end
      take(c)
    end
    if last ~= nil and not (last < key) then sorted = false end
    last = key
    if stop ~= nil and stop(result, key, sorted) then return result, false end
    result[key] = read_value(c, depth + 1)
    local sep = space(c, COMMA)
    if sep == 125 then
      take(c)
      return result, true
    end
    if sep ~= COMMA then fail(c, "expected ',' or '}'") end
    take(c)
  end
end

local function read_array(c, depth)
  take(c)
  local result = {}
  if space(c, 93) == 93 then
    take(c)
    return result
  end
  while true do
    table.insert(result, read_value(c, depth + 1))
    local sep = space(c, COMMA)
    if sep ~= COMMA and sep ~= 93 then fail(c, "expected ',' or ']'") end
    take(c)
    if sep == 93 then return result end
  end
end

read_value = function(c, depth)
  if depth > 64 then fail(c, "nested too deep") end
  local b = space(c, QUOTE)
  if b == QUOTE then
    if depth > 1 and c.dict ~= nil then -- inside a template: a string obj holds too, taken whole
      local tok = lookup(c, c.dict.strings)
      if tok ~= nil then return tok.value end
    end
    return read_string(c)
  end
  if b == 123 then return (read_object(c, depth)) end
  if b == 91 then return read_array(c, depth) end
  if NUMBER[b] then return read_number(c) end
  if skip(c, TRUE) then return true end
  if skip(c, FALSE) then return false end
  if skip(c, NULL) then return nil end
  if b == nil then fail(c, "unexpected end") end
  fail(c, "unexpected byte " .. b)
end

-- The keys of deliver's record, in the order deliver writes them: its head first (delivery/engine/state.py
-- RECORD_HEAD), then the rest sorted. (Records of older versions are sorted throughout.)
local HEAD = { "phase", "hold", "message", "strategy", "revision", "stableRevision", "step", "weight",
  "handledRequest", "retryable" }
local IN_HEAD = {}
for _, name in ipairs(HEAD) do IN_HEAD[name] = true end
local RECORD_KEYS = {}
for _, name in ipairs(HEAD) do
  table.insert(RECORD_KEYS, { name = name, token = token('"' .. name .. '":', '"' .. name .. '";') })
end
for _, name in ipairs({ "analysisStarted", "extensions", "failedRevision", "failedTemplate", "failedTemplatePacked",
  "finished", "handledRequest", "hold", "hooks", "looks", "message", "phase", "retrying", "revision" }) do
  table.insert(RECORD_KEYS, { name = name, token = token('"' .. name .. '":', '"' .. name .. '";') })
end

-- Deliver's record read from the annotation text, as far as phase and the key after it (deliver
-- writes its keys sorted, so hold, message and the failed template come before it; the values
-- after phase are not read):
-- record, nil; or nil, why, too_long. like: an object whose keys and strings the record's nested
-- values probably hold too (the Deployment), to read them faster.
local function read_record(text, budget, like)
  local c = cursor(text, budget)
  if like ~= nil then c.dict = dictionary(like) end
  local ok, record = pcall(function()
    if space(c, 123) ~= 123 then fail(c, "not a JSON object") end
    local found, closed = read_object(c, 0, RECORD_KEYS, function(object, key, sorted)
      if object.phase == nil then return false end
      if sorted then return "phase" < key end -- an older record: nothing read yet sorts before phase
      return not IN_HEAD[key] -- the head is read: the rest (templates, verdicts) is not needed
    end)
    if closed and space(c) ~= nil then fail(c, "trailing characters") end
    return found
  end)
  if ok then return record, nil, false end
  if type(record) == "table" and record.json ~= nil then return nil, record.json, record.long == true end
  return nil, tostring(record), false
end
