-- deliver: the JSON reader the Argo CD scripts share (inlined where a script says `-- #include json.lua`;
-- `python -m e2e.argocd` renders argocd-cm.yaml).
-- A small JSON reader (Argo CD's Lua has no JSON library): returns the value, or nil and why.
local function json_decode(text)
  local pos = 1
  local value

  local function fail(what)
    error({ json = what .. " at character " .. pos })
  end

  local function skip()
    pos = string.find(text, "[^ \t\r\n]", pos) or (#text + 1)
  end

  local function utf8(code)
    if code < 0x80 then
      return string.char(code)
    elseif code < 0x800 then
      return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
    elseif code < 0x10000 then
      return string.char(0xE0 + math.floor(code / 0x1000), 0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
    end
    return string.char(0xF0 + math.floor(code / 0x40000), 0x80 + math.floor(code / 0x1000) % 0x40,
      0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end

  local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

  local function read_string()
    pos = pos + 1 -- the opening quote
    local parts = {}
    while true do
      local stop = string.find(text, '["\\]', pos)
      if stop == nil then fail("unterminated string") end
      table.insert(parts, string.sub(text, pos, stop - 1))
      pos = stop + 1
      if string.sub(text, stop, stop) == '"' then
        return table.concat(parts)
      end
      local e = string.sub(text, pos, pos)
      if e == "u" then
        local hex = string.sub(text, pos + 1, pos + 4)
        local code = tonumber(hex, 16)
        if code == nil or #hex ~= 4 then fail("bad \\u escape") end
        pos = pos + 5
        if code >= 0xD800 and code <= 0xDBFF and string.sub(text, pos, pos + 1) == "\\u" then
          local low = tonumber(string.sub(text, pos + 2, pos + 5), 16)
          if low ~= nil and low >= 0xDC00 and low <= 0xDFFF then
            code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
            pos = pos + 6
          end
        end
        table.insert(parts, utf8(code))
      elseif ESCAPES[e] ~= nil then
        table.insert(parts, ESCAPES[e])
        pos = pos + 1
      else
        fail("bad escape")
      end
    end
  end

  value = function()
    skip()
    local c = string.sub(text, pos, pos)
    if c == "{" then
      local result = {}
      pos = pos + 1
      skip()
      if string.sub(text, pos, pos) == "}" then
        pos = pos + 1
        return result
      end
      while true do
        skip()
        if string.sub(text, pos, pos) ~= '"' then fail("expected a key") end
        local key = read_string()
        skip()
        if string.sub(text, pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        result[key] = value()
        skip()
        local sep = string.sub(text, pos, pos)
        pos = pos + 1
        if sep == "}" then return result end
        if sep ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      local result = {}
      pos = pos + 1
      skip()
      if string.sub(text, pos, pos) == "]" then
        pos = pos + 1
        return result
      end
      while true do
        table.insert(result, value())
        skip()
        local sep = string.sub(text, pos, pos)
        pos = pos + 1
        if sep == "]" then return result end
        if sep ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return read_string()
    elseif string.sub(text, pos, pos + 3) == "true" then
      pos = pos + 4
      return true
    elseif string.sub(text, pos, pos + 4) == "false" then
      pos = pos + 5
      return false
    elseif string.sub(text, pos, pos + 3) == "null" then
      pos = pos + 4
      return nil
    end
    local number = string.match(text, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if number == nil or number == "" then fail("unexpected " .. (c == "" and "end" or "'" .. c .. "'")) end
    pos = pos + #number
    return tonumber(number)
  end

  local ok, result = pcall(function()
    local v = value()
    skip()
    if pos <= #text then fail("trailing characters") end
    return v
  end)
  if ok then return result, nil end
  if type(result) == "table" and result.json ~= nil then return nil, result.json end
  return nil, tostring(result)
end

-- The JSON object in text (deliver's record), or nil and why.
local function json_object(text)
  local value, why = json_decode(text)
  if type(value) ~= "table" or value[1] ~= nil then
    return nil, why or "not a JSON object"
  end
  return value, nil
end
