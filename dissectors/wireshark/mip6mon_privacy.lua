-- mip6mon_privacy.lua: a Wireshark / tshark post-dissector that names the three wire
-- extensions of the mip6mon profile of draft-irtf-mobopts-location-privacy-solutions-02
-- (PROFILE.md "Code points"), which tshark 4.0 shows only as unnamed experimental data:
--
--   Pseudo Home Address option   destination option 0xFE, length 16   -> mip6lp.phoa
--   'P' flag of the HoTI         0x8000 of the HoTI's Reserved field   -> mip6lp.hoti.p
--   Privacy Keygen Token option  mobility option 18, length 10         -> mip6lp.pkt.*
--
-- Use:  mip6mon wireshark install     (into the personal Lua plugins folder, for Wireshark
--                                     and every tshark: Help > About Wireshark > Folders)
--       tshark -X lua_script:mip6mon_privacy.lua -r CAPTURE -Y "mip6lp.hoti.p == 1"
--
-- How it reads the packet: tshark locates every Destination Options header and every Mobility
-- Header in the frame, also inside IPv6-in-IPv6 tunnels and in ESP payloads that tshark
-- decrypted (esp_sa table); this post-dissector takes each such header's octets and walks its
-- options itself. tshark's own fields are not enough: 0xFE is only `ipv6.opt.experimental`,
-- option 18 is `mip6.em.data` without its last two octets, and the HoTI's Reserved field has
-- no field at all (PROFILE.md "Code points").
--
-- It never raises on a short or malformed packet: every read is bounds-checked against the
-- header's length field and the captured octets; an option of the profile that does not fit
-- (or has another length or subtype than the profile's) gets an expert warning.

local PROTO_ABBREV = "mip6lp"
local PROTO_DESCRIPTION =
    "MIPv6 location privacy (draft-irtf-mobopts-location-privacy-solutions-02, mip6mon profile)"

------------------------------------------------------------------------------------------
-- Loaded once
------------------------------------------------------------------------------------------

-- A copy in the personal plugins folder (`mip6mon wireshark install`) plus this file given
-- with `-X lua_script:` loads the plugin twice, and tshark 4.0 fails the second Proto() with
-- a Lua error ("there cannot be two protocols with the same description"). Every plugin
-- runs with its own _ENV but shares _G: the first copy marks _G and a later one stands down
-- (saying so on stderr when the two files differ, so an outdated copy is not used unknowingly).
local function file_text(source)
    local f = source:sub(1, 1) == "@" and io.open(source:sub(2), "rb")
    if not f then return nil end
    local text = f:read("*a")
    f:close()
    return text
end

local this_source = debug.getinfo(1, "S").source
local first_source = rawget(_G, "mip6lp_loaded_from")
if first_source ~= nil then
    local first_text = file_text(first_source)
    if first_text == nil or first_text ~= file_text(this_source) then
        io.stderr:write(string.format(
            "mip6lp: not loading %s: a different copy is already loaded from %s\n",
            this_source:sub(2), first_source:sub(2)))
    end
    return
end
rawset(_G, "mip6lp_loaded_from", this_source)

------------------------------------------------------------------------------------------
-- Code points (PROFILE.md "Code points"; RFC 6275 6.1, 6.2; RFC 8200 4.2)
------------------------------------------------------------------------------------------

local DSTOPT_PAD1 = 0x00             -- RFC 8200 4.2: Pad1 is one octet, no length
local DSTOPT_PSEUDO_HOA = 0xFE       -- PROFILE.md "Pseudo Home Address option" (RFC 4727)
local PSEUDO_HOA_LENGTH = 16         -- data = the pseudo home address

local MH_TYPE_HOTI = 1               -- RFC 6275 6.1.3
local HOTI_RESERVED_AT = 6           -- RFC 6275 6.1.3: 16-bit Reserved after the 6-octet header
local HOTI_P_FLAG = 0x8000           -- PROFILE.md "'P' flag in HoTI": MSB of Reserved

local MHOPT_PAD1 = 0                 -- RFC 6275 6.2.2
local MHOPT_PRIVACY_TOKEN = 18       -- PROFILE.md "Privacy Keygen Token option" (RFC 5096)
local PRIVACY_TOKEN_LENGTH = 10      -- subtype (1) | reserved (1) | token (8)
local PRIVACY_TOKEN_SUBTYPE = 0x01

-- RFC 6275 6.1.2-6.1.9: where the mobility options start, from the MH's first octet
-- (6-octet MH header, then the message data of each type).
local MH_OPTIONS_AT = {
    [0] = 8,    -- Binding Refresh Request (6.1.2): Reserved 16
    [1] = 16,   -- HoTI (6.1.3): Reserved 16, Home Init Cookie 64
    [2] = 16,   -- CoTI (6.1.4): Reserved 16, Care-of Init Cookie 64
    [3] = 24,   -- HoT (6.1.5): Home Nonce Index 16, Cookie 64, Home Keygen Token 64
    [4] = 24,   -- CoT (6.1.6): Care-of Nonce Index 16, Cookie 64, Care-of Keygen Token 64
    [5] = 12,   -- BU (6.1.7): Sequence 16, flags 16, Lifetime 16
    [6] = 12,   -- BA (6.1.8): Status 8, flags 8, Sequence 16, Lifetime 16
    [7] = 24,   -- Binding Error (6.1.9): Status 8, Reserved 8, Home Address 128
}

------------------------------------------------------------------------------------------
-- Fields (filterable: `-Y mip6lp.phoa`, `-e mip6lp.pkt.token`, ...)
------------------------------------------------------------------------------------------

local F = {
    -- PROFILE.md "Pseudo Home Address option": destination option 0xFE, length 16
    phoa_option   = ProtoField.none("mip6lp.phoa.option", "Pseudo Home Address option",
                        "Destination option 0xFE (PROFILE.md)"),
    phoa_length   = ProtoField.uint8("mip6lp.phoa.length", "Length", base.DEC, nil, nil,
                        "Option data length in octets (16 in the profile)"),
    phoa          = ProtoField.ipv6("mip6lp.phoa", "Pseudo Home Address",
                        "Pseudo home address carried in destination option 0xFE"),

    -- PROFILE.md "'P' flag in HoTI": MSB of the HoTI's 16-bit Reserved field
    hoti_reserved = ProtoField.uint16("mip6lp.hoti.reserved", "HoTI Reserved", base.HEX, nil,
                        nil, "Reserved field of the Home Test Init (RFC 6275 6.1.3)"),
    hoti_p        = ProtoField.bool("mip6lp.hoti.p", "P flag (location privacy)", 16,
                        { "Set", "Not set" }, HOTI_P_FLAG,
                        "The mobile node asks for a privacy keygen token (draft 4.1)"),

    -- PROFILE.md "Privacy Keygen Token option": mobility option 18, length 10
    pkt_option    = ProtoField.none("mip6lp.pkt", "Privacy Keygen Token option",
                        "Mobility option 18 (PROFILE.md)"),
    pkt_length    = ProtoField.uint8("mip6lp.pkt.length", "Length", base.DEC, nil, nil,
                        "Option data length in octets (10 in the profile)"),
    pkt_subtype   = ProtoField.uint8("mip6lp.pkt.subtype", "Subtype", base.HEX,
                        { [PRIVACY_TOKEN_SUBTYPE] = "Privacy keygen token" }),
    pkt_reserved  = ProtoField.uint8("mip6lp.pkt.reserved", "Reserved", base.HEX),
    pkt_token     = ProtoField.bytes("mip6lp.pkt.token", "Privacy Keygen Token", base.NONE,
                        "First(64, HMAC_SHA1(Kcn, :: | home nonce | 0x02)) (draft 4.1)"),
}

local E = {
    bad_length  = ProtoExpert.new("mip6lp.bad_length", "Option length differs from the profile",
                      expert.group.MALFORMED, expert.severity.WARN),
    bad_subtype = ProtoExpert.new("mip6lp.pkt.bad_subtype", "Unknown privacy token subtype",
                      expert.group.PROTOCOL, expert.severity.WARN),
    truncated   = ProtoExpert.new("mip6lp.truncated",
                      "Option runs past the end of its header or of the captured octets",
                      expert.group.MALFORMED, expert.severity.WARN),
}

local mip6lp = Proto(PROTO_ABBREV, PROTO_DESCRIPTION)
mip6lp.fields = F
mip6lp.experts = E

-- tshark's headers, located by its own dissectors (outer and inner IPv6, decrypted ESP).
local dstopts_headers = Field.new("ipv6.dstopts")   -- one per Destination Options header
local mobility_headers = Field.new("mipv6")         -- one per Mobility Header

------------------------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------------------------

-- The octets a tshark header item covers, or nil. FieldInfo.range raises ("Range is out of
-- bounds") for an item longer than the captured octets; tshark 4.0 clips its header items to
-- what was captured, so this is not expected, but a pcall keeps it from ever becoming a Lua
-- error in the packet tree.
local function header_range(fieldinfo)
    local ok, range = pcall(function() return fieldinfo.range end)
    if ok and range ~= nil and range:len() > 0 then return range end
    return nil
end

-- RFC 8200 4.2 / RFC 6275 6.1.1: both headers give their length in 8-octet units, not
-- counting the first 8 octets. Octet 1 holds it. The walk stops at the captured end.
local function header_limit(range)
    if range:len() < 2 then return 0 end
    local declared = (range(1, 1):uint() + 1) * 8
    return math.min(declared, range:len())
end

-- Walk the TLV options of range[first, limit) (RFC 8200 4.2, RFC 6275 6.2): Pad1 is a lone
-- octet, every other option is type, length, data. Calls visit(type, at, length, whole) for
-- each option whose type and length octets were read; `whole` is false for the last one when
-- its data runs past `limit` (the walk stops there).
local function walk_options(range, first, limit, pad1, visit)
    local at = first
    while at < limit do
        local otype = range(at, 1):uint()
        if otype == pad1 then
            at = at + 1
        else
            if at + 2 > limit then return end
            local olen = range(at + 1, 1):uint()
            local whole = at + 2 + olen <= limit
            visit(otype, at, olen, whole)
            if not whole then return end
            at = at + 2 + olen
        end
    end
end

-- The option's octets that are there: type, length and as much data as fits.
local function option_range(range, at, olen, limit)
    return range(at, math.min(2 + olen, limit - at))
end

------------------------------------------------------------------------------------------
-- The three extensions
------------------------------------------------------------------------------------------

-- Is a profile option whole and of the profile's length? If not, say why on its item.
local function option_fits(item, whole, olen, want, name)
    if not whole then
        item:add_proto_expert_info(E.truncated)
        return false
    end
    if olen ~= want then
        item:add_proto_expert_info(E.bad_length, string.format(
            "%s option length %d (PROFILE.md: %d)", name, olen, want))
        return false
    end
    return true
end

-- PROFILE.md "Pseudo Home Address option": every 0xFE option of one Destination Options
-- header (RFC 8200 4.6; 0xFE in a Hop-by-Hop header is some other experiment). The profile
-- also fixes the alignment (8n+6, like the HAO): a sender's duty, not checked here.
local function add_pseudo_home_addresses(range, subtree)
    local limit = header_limit(range)
    walk_options(range, 2, limit, DSTOPT_PAD1, function(otype, at, olen, whole)
        if otype ~= DSTOPT_PSEUDO_HOA then return end
        local item = subtree():add(F.phoa_option, option_range(range, at, olen, limit))
        item:add(F.phoa_length, range(at + 1, 1))
        if option_fits(item, whole, olen, PSEUDO_HOA_LENGTH, "Pseudo Home Address") then
            local address = range(at + 2, PSEUDO_HOA_LENGTH)
            item:add(F.phoa, address)
            item:append_text(": " .. tostring(address:ipv6()))
        end
    end)
end

-- PROFILE.md "'P' flag in HoTI": present on every HoTI whose Reserved field was captured.
local function add_hoti_flag(range, limit, subtree)
    if limit < HOTI_RESERVED_AT + 2 then return end
    local reserved = range(HOTI_RESERVED_AT, 2)
    local item = subtree():add(F.hoti_reserved, reserved)
    item:add(F.hoti_p, reserved)
end

-- PROFILE.md "Privacy Keygen Token option": subtype 0x01, reserved 0x00, 8-octet token.
-- Each part is shown when its octets are there; the token only in a whole option.
local function add_privacy_token(range, at, olen, whole, limit, subtree)
    local item = subtree():add(F.pkt_option, option_range(range, at, olen, limit))
    item:add(F.pkt_length, range(at + 1, 1))
    local present = math.min(olen, limit - at - 2)   -- data octets captured
    if present >= 1 then
        local subtype = range(at + 2, 1)
        local subtype_item = item:add(F.pkt_subtype, subtype)
        if subtype:uint() ~= PRIVACY_TOKEN_SUBTYPE then
            subtype_item:add_proto_expert_info(E.bad_subtype, string.format(
                "Subtype 0x%02x (PROFILE.md: 0x%02x)", subtype:uint(), PRIVACY_TOKEN_SUBTYPE))
        end
    end
    if present >= 2 then item:add(F.pkt_reserved, range(at + 3, 1)) end
    if option_fits(item, whole, olen, PRIVACY_TOKEN_LENGTH, "Privacy Keygen Token") then
        local token = range(at + 4, PRIVACY_TOKEN_LENGTH - 2)
        item:add(F.pkt_token, token)
        item:append_text(": " .. tostring(token:bytes()):lower())
    end
end

-- RFC 6275 6.1.1: one Mobility Header; the HoTI flag, then its options (RFC 6275 6.2).
local function add_mobility_header(range, subtree)
    local limit = header_limit(range)
    if limit < 3 then return end
    local mh_type = range(2, 1):uint()
    if mh_type == MH_TYPE_HOTI then add_hoti_flag(range, limit, subtree) end
    local first = MH_OPTIONS_AT[mh_type]
    if first == nil then return end
    walk_options(range, first, limit, MHOPT_PAD1, function(otype, at, olen, whole)
        if otype == MHOPT_PRIVACY_TOKEN then
            add_privacy_token(range, at, olen, whole, limit, subtree)
        end
    end)
end

------------------------------------------------------------------------------------------
-- Post-dissector
------------------------------------------------------------------------------------------

function mip6lp.dissector(tvb, pinfo, tree)
    -- the protocol's subtree is made on first use: frames without the extensions get none
    local made
    local function subtree()
        if made == nil then made = tree:add(mip6lp) end
        return made
    end
    for _, fieldinfo in ipairs({ dstopts_headers() }) do
        local range = header_range(fieldinfo)
        if range ~= nil then add_pseudo_home_addresses(range, subtree) end
    end
    for _, fieldinfo in ipairs({ mobility_headers() }) do
        local range = header_range(fieldinfo)
        if range ~= nil then add_mobility_header(range, subtree) end
    end
end

register_postdissector(mip6lp)
