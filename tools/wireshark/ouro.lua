-- ouro.lua: a Wireshark dissector for ouro (Ouroboros in Go) captures
-- and wire formats.
--
--   wireshark -X lua_script:tools/wireshark/ouro.lua -r capture.pcapng
--   tshark -X lua_script:tools/wireshark/ouro.lua -r capture.pcapng -V
--
-- It decodes:
--   * the capture link type of `ouro capture` (LINKTYPE_USER0, 147): the
--     16-byte record header (docs/wire/capture.md) and what it carries;
--   * the unicast data-transfer PCI (docs/wire/unicast-dt.md) and the
--     reserved endpoints' messages: flow allocator (fa), directory,
--     keepalive (docs/wire/unicast.md);
--   * FRCT (docs/wire/frct.md) in the SDUs of application flows, found by
--     its header's validity rules (a flow's QoS is not on the wire);
--   * the N-1 flow messages of a unicast IPCP: connmgr Open/OpenResp,
--     enrollment, management frames (docs/wire/unicast.md);
--   * the broadcast layer's header (docs/layers.md);
--   * the UDP shim (UDP port 3435) and Ethernet shim (EtherType 0xA000)
--     headers and their control messages (docs/wire/shims.md), on
--     ordinary captures of the wire too;
--   * the serial shim's framing on a byte stream (COBS, CRC-32C, frame
--     header; docs/wire/serial.md), on TCP by Decode As.
-- Every CBOR message is also shown through Wireshark's CBOR dissector.
-- Checked by tools/wireshark/dissector_test.go (tshark over captures the
-- tests make, and a golden file).

local ouro = Proto("ouro", "Ouroboros (ouro) capture")

local layers = { [1] = "unicast", [2] = "udp", [3] = "eth", [4] = "serial", [5] = "broadcast", [6] = "local" }
local contents = { [1] = "dt PDU", [2] = "shim SDU", [3] = "shim control", [4] = "broadcast packet" }
local dirs = { [0] = "in", [1] = "out" }
local cubes = { [0] = "voice", [1] = "video", [2] = "data", [3] = "best_effort", [4] = "raw" }

local f = {
	version = ProtoField.uint8("ouro.version", "Version"),
	dir = ProtoField.uint8("ouro.dir", "Direction", base.DEC, dirs, 0x01),
	layer = ProtoField.uint8("ouro.layer", "IPCP kind", base.DEC, layers),
	content = ProtoField.uint8("ouro.content", "Content", base.DEC, contents),
	port = ProtoField.uint64("ouro.port", "Port / endpoint id"),
	msg = ProtoField.string("ouro.msg", "Message"),

	dt_dst = ProtoField.uint64("ouro.dt.dst", "Destination address"),
	dt_cube = ProtoField.uint8("ouro.dt.cube", "QoS cube", base.DEC, cubes),
	dt_ttl = ProtoField.uint8("ouro.dt.ttl", "TTL"),
	dt_ecn = ProtoField.uint8("ouro.dt.ecn", "ECN"),
	dt_eid = ProtoField.uint64("ouro.dt.eid", "Destination endpoint id"),
	dt_src = ProtoField.uint64("ouro.dt.src", "Sender's address"),
	dt_payload = ProtoField.bytes("ouro.dt.payload", "Payload"),

	frct_flags = ProtoField.uint16("ouro.frct.flags", "Flags", base.HEX),
	frct_data = ProtoField.bool("ouro.frct.flags.data", "DATA", 16, nil, 0x0001),
	frct_ack = ProtoField.bool("ouro.frct.flags.ack", "ACK", 16, nil, 0x0002),
	frct_fc = ProtoField.bool("ouro.frct.flags.fc", "FC", 16, nil, 0x0004),
	frct_rdvs = ProtoField.bool("ouro.frct.flags.rdvs", "RDVS", 16, nil, 0x0008),
	frct_fin = ProtoField.bool("ouro.frct.flags.fin", "FIN", 16, nil, 0x0010),
	frct_ka = ProtoField.bool("ouro.frct.flags.keepalive", "KEEPALIVE", 16, nil, 0x0020),
	frct_sack = ProtoField.bool("ouro.frct.flags.sack", "SACK", 16, nil, 0x0040),
	frct_window = ProtoField.uint32("ouro.frct.window", "Window"),
	frct_seqno = ProtoField.uint32("ouro.frct.seqno", "Seqno"),
	frct_ackno = ProtoField.uint32("ouro.frct.ackno", "Ackno"),
	frct_sack_start = ProtoField.uint32("ouro.frct.sack.start", "SACK block start"),
	frct_sack_end = ProtoField.uint32("ouro.frct.sack.end", "SACK block end"),
	sdu = ProtoField.bytes("ouro.sdu", "SDU"),

	fa_type = ProtoField.uint8("ouro.fa.type", "Type", base.DEC,
		{ [1] = "Req", [2] = "Resp", [3] = "Dealloc", [4] = "Update", [5] = "Keepalive", [6] = "Reply", [7] = "Finish", [8] = "Resume" }),
	fa_src = ProtoField.uint64("ouro.fa.src_eid", "Source endpoint id"),
	fa_dst = ProtoField.uint64("ouro.fa.dst_eid", "Destination endpoint id"),
	fa_hash = ProtoField.bytes("ouro.fa.hash", "Destination name hash"),
	fa_name = ProtoField.string("ouro.fa.name", "Source name"),
	fa_result = ProtoField.uint8("ouro.fa.result", "Result", base.DEC, { [0] = "ok", [1] = "not found", [2] = "refused", [3] = "busy", [4] = "no ticket" }),
	fa_ece = ProtoField.uint8("ouro.fa.ece", "ECE"),
	fa_part = ProtoField.string("ouro.fa.kex", "Key exchange piece"),

	conn_purpose = ProtoField.uint8("ouro.conn.purpose", "Purpose", base.DEC, { [1] = "enroll", [2] = "mgmt", [3] = "dt" }),
	conn_result = ProtoField.uint8("ouro.conn.result", "Result", base.DEC, { [0] = "ok", [1] = "refused", [2] = "exists" }),
	conn_layer = ProtoField.string("ouro.conn.layer", "Layer"),
	conn_name = ProtoField.string("ouro.conn.name", "Name"),
	conn_addr = ProtoField.uint64("ouro.conn.addr", "Address"),
	conn_text = ProtoField.string("ouro.conn.text", "Message"),

	enroll_name = ProtoField.string("ouro.enroll.name", "Name"),
	enroll_layer = ProtoField.string("ouro.enroll.layer", "Layer"),
	enroll_result = ProtoField.uint8("ouro.enroll.result", "Result", base.DEC, { [0] = "ok", [1] = "refused", [2] = "collision", [3] = "busy" }),
	enroll_addr = ProtoField.uint64("ouro.enroll.addr", "Address"),
	enroll_members = ProtoField.uint32("ouro.enroll.members", "Members"),
	enroll_text = ProtoField.string("ouro.enroll.text", "Message"),

	mgmt_type = ProtoField.uint8("ouro.mgmt.type", "Management frame", base.DEC, { [1] = "hello", [2] = "LSU", [3] = "auth" }),
	mgmt_body = ProtoField.bytes("ouro.mgmt.body", "Body"),

	bcast_version = ProtoField.uint8("ouro.bcast.version", "Version"),
	bcast_ttl = ProtoField.uint8("ouro.bcast.ttl", "TTL"),
	bcast_seq = ProtoField.uint32("ouro.bcast.seq", "Sequence number"),
	bcast_origin = ProtoField.uint64("ouro.bcast.origin", "Origin id", base.HEX),

	shim_eid = ProtoField.uint32("ouro.shim.eid", "Destination endpoint id"),
	shim_len = ProtoField.uint16("ouro.shim.len", "SDU length"),
	shim_type = ProtoField.uint8("ouro.shim.type", "Control type", base.DEC,
		{ [1] = "alloc request", [2] = "alloc response", [3] = "dealloc", [4] = "no such flow", [5] = "name query", [6] = "name reply" }),
	shim_req = ProtoField.uint64("ouro.shim.req_id", "Request id"),
	shim_src = ProtoField.uint64("ouro.shim.src_eid", "Source endpoint id"),
	shim_dst = ProtoField.uint64("ouro.shim.dst_eid", "Destination endpoint id"),
	shim_result = ProtoField.uint8("ouro.shim.result", "Result", base.DEC, { [0] = "ok", [1] = "not found", [2] = "refused", [3] = "busy" }),
	shim_hash = ProtoField.bytes("ouro.shim.hash", "Name hash"),
}
local fl = {}
for _, v in pairs(f) do fl[#fl + 1] = v end
ouro.fields = fl

local ef_bad = ProtoExpert.new("ouro.bad", "Not a valid ouro header", expert.group.MALFORMED, expert.severity.WARN)
ouro.experts = { ef_bad }

local cbor_dissector = Dissector.get("cbor")

----------------------------------------------------------------------
-- A small CBOR reader: enough to walk a message and name its fields.
-- item = { mt = major type, v = argument (number or UInt64), off, len
-- (whole item), hlen (its head), items = children (arrays, maps) }.

local function cbor_item(tvb, off, limit, depth)
	if depth > 16 or off >= limit then return nil end
	local ib = tvb:range(off, 1):uint()
	local mt, ai = math.floor(ib / 32), ib % 32
	local v, hlen
	if ai < 24 then
		v, hlen = ai, 1
	elseif ai <= 27 then
		local n = ({ [24] = 1, [25] = 2, [26] = 4, [27] = 8 })[ai]
		if off + 1 + n > limit then return nil end
		if n == 8 then
			v = tvb:range(off + 1, 8):uint64()
			if v:higher() == 0 then v = v:lower() end
		else
			v = tvb:range(off + 1, n):uint()
		end
		hlen = 1 + n
	else
		return nil -- indefinite lengths and reserved values: not ours
	end
	local it = { mt = mt, v = v, off = off, hlen = hlen }
	if mt == 0 or mt == 1 or mt == 7 then
		it.len = hlen
	elseif mt == 2 or mt == 3 then
		if type(v) ~= "number" or off + hlen + v > limit then return nil end
		it.len = hlen + v
	elseif mt == 4 or mt == 5 then
		if type(v) ~= "number" then return nil end
		local n = v
		if mt == 5 then n = 2 * v end
		if n > limit - off then return nil end
		it.items = {}
		local p = off + hlen
		for i = 1, n do
			local c = cbor_item(tvb, p, limit, depth + 1)
			if c == nil then return nil end
			it.items[i] = c
			p = p + c.len
		end
		it.len = p - off
	elseif mt == 6 then
		local c = cbor_item(tvb, off + hlen, limit, depth + 1)
		if c == nil then return nil end
		it.items = { c }
		it.len = hlen + c.len
	end
	return it
end

-- cbor_whole parses tvb[off:] as exactly one CBOR item, or returns nil.
local function cbor_whole(tvb, off)
	local limit = tvb:len()
	if off >= limit then return nil end
	local ok, it = pcall(cbor_item, tvb, off, limit, 0)
	if ok and it ~= nil and it.off + it.len == limit then return it end
	return nil
end

local function rng(tvb, it) return tvb:range(it.off, it.len) end
local function is_uint(it) return it ~= nil and it.mt == 0 end
local function is_tstr(it) return it ~= nil and it.mt == 3 end
local function is_bstr(it) return it ~= nil and it.mt == 2 end
local function is_array(it, n) return it ~= nil and it.mt == 4 and (n == nil or #it.items == n) end
local function u64(it)
	if type(it.v) == "number" then return UInt64.new(it.v) end
	return it.v
end
local function num(it)
	if type(it.v) == "number" then return it.v end
	return it.v:tonumber()
end
local function str(tvb, it)
	if it.v == 0 then return "" end
	return tvb:range(it.off + it.hlen, it.v):string()
end

local function add_u64(tree, field, tvb, it) tree:add(field, rng(tvb, it), u64(it)) end
local function add_num(tree, field, tvb, it) tree:add(field, rng(tvb, it), num(it)) end
local function add_str(tree, field, tvb, it) tree:add(field, rng(tvb, it), str(tvb, it)) end

-- show_cbor adds Wireshark's own CBOR view of tvb[off:].
local function show_cbor(tvb, off, pinfo, tree)
	if cbor_dissector ~= nil then
		pcall(function() cbor_dissector:call(tvb:range(off):tvb(), pinfo, tree) end)
	end
end

-- info collects the Info column of the packet being dissected.
local info = {}

local function set_msg(tree, pinfo, tvb, off, name)
	tree:add(f.msg, tvb:range(off), name)
	info[#info + 1] = name
end

----------------------------------------------------------------------
-- Unicast layer control messages (docs/wire/unicast.md).

local fa_names = { [1] = "Req", [2] = "Resp", [3] = "Dealloc", [4] = "Update", [5] = "Keepalive", [6] = "Reply", [7] = "Finish", [8] = "Resume" }

local function dissect_fa(tvb, off, pinfo, tree)
	local it = cbor_whole(tvb, off)
	local t = tree:add(ouro, tvb:range(off), "Flow allocator message")
	if not is_array(it, 11) or not is_uint(it.items[1]) then
		set_msg(t, pinfo, tvb, off, "fa message (unknown shape)")
		show_cbor(tvb, off, pinfo, t)
		return
	end
	local x = it.items
	local typ = num(x[1])
	set_msg(t, pinfo, tvb, off, "fa " .. (fa_names[typ] or ("type " .. typ)))
	add_num(t, f.fa_type, tvb, x[1])
	if is_uint(x[2]) then add_u64(t, f.fa_src, tvb, x[2]) end
	if is_uint(x[3]) then add_u64(t, f.fa_dst, tvb, x[3]) end
	if is_bstr(x[4]) and x[4].v > 0 then t:add(f.fa_hash, tvb:range(x[4].off + x[4].hlen, x[4].v)) end
	if is_tstr(x[5]) then add_str(t, f.fa_name, tvb, x[5]) end
	if is_uint(x[7]) then add_num(t, f.fa_result, tvb, x[7]) end
	if is_uint(x[8]) then add_num(t, f.fa_ece, tvb, x[8]) end
	if is_bstr(x[9]) and x[9].v > 0 and is_uint(x[10]) and is_uint(x[11]) then
		t:add(f.fa_part, rng(tvb, x[9]), string.format("piece %d of %d, %d bytes", num(x[10]) + 1, num(x[11]), x[9].v))
	end
	show_cbor(tvb, off, pinfo, t)
end

local enroll_results = { [0] = "ok", [1] = "refused", [2] = "collision", [3] = "busy" }

-- dissect_n1 names a message of a unicast IPCP's N-1 flow (connmgr,
-- enrollment, management frames) from its shape; false if it is none.
local function dissect_n1(tvb, off, pinfo, tree)
	local it = cbor_whole(tvb, off)
	if not is_array(it) then return false end
	local x, n = it.items, #it.items
	local t = tree:add(ouro, tvb:range(off), "Unicast IPCP N-1 flow message")
	local name
	if n == 10 and is_uint(x[1]) and is_uint(x[2]) and is_tstr(x[3]) and is_tstr(x[4]) then
		local purpose = ({ [1] = "enroll", [2] = "mgmt", [3] = "dt" })[num(x[2])] or tostring(num(x[2]))
		name = "connmgr Open (" .. purpose .. ")"
		add_num(t, f.conn_purpose, tvb, x[2])
		add_str(t, f.conn_layer, tvb, x[3])
		add_str(t, f.conn_name, tvb, x[4])
		if is_uint(x[5]) then add_u64(t, f.conn_addr, tvb, x[5]) end
	elseif n == 9 and is_uint(x[1]) and is_tstr(x[2]) and is_tstr(x[3]) and is_uint(x[4]) then
		name = "connmgr OpenResp"
		add_num(t, f.conn_result, tvb, x[1])
		if x[2].v > 0 then add_str(t, f.conn_text, tvb, x[2]) end
		add_str(t, f.conn_name, tvb, x[3])
		add_u64(t, f.conn_addr, tvb, x[4])
	elseif n == 7 and is_uint(x[1]) and is_tstr(x[2]) and is_bstr(x[3]) and is_tstr(x[4]) then
		name = "enroll Req"
		add_str(t, f.enroll_name, tvb, x[2])
		add_str(t, f.enroll_layer, tvb, x[4])
	elseif (n == 7 or n == 8) and is_uint(x[1]) and is_tstr(x[2]) and is_tstr(x[3]) then
		-- Challenge; 8 elements since it carries the member's clock
		-- before sig (enroll.Challenge.Time)
		name = "enroll Challenge"
		add_num(t, f.enroll_result, tvb, x[1])
		if x[2].v > 0 then add_str(t, f.enroll_text, tvb, x[2]) end
		add_str(t, f.enroll_name, tvb, x[3])
	elseif n == 1 and is_bstr(x[1]) then
		name = "enroll Proof"
	elseif n == 6 and is_uint(x[1]) and is_tstr(x[2]) then
		name = "enroll Resp"
		add_num(t, f.enroll_result, tvb, x[1])
		if x[2].v > 0 then add_str(t, f.enroll_text, tvb, x[2]) end
		if is_array(x[3]) and is_tstr(x[3].items[1]) then add_str(t, f.enroll_layer, tvb, x[3].items[1]) end
		if is_array(x[4]) then t:add(f.enroll_members, rng(tvb, x[4]), #x[4].items) end
		if is_tstr(x[5]) then add_str(t, f.enroll_name, tvb, x[5]) end
		if is_uint(x[6]) then add_u64(t, f.enroll_addr, tvb, x[6]) end
	elseif n == 1 and is_uint(x[1]) then
		name = "enroll Done"
		add_u64(t, f.enroll_addr, tvb, x[1])
	elseif n == 2 and is_uint(x[1]) and is_tstr(x[2]) then
		name = "enroll Ack"
		add_num(t, f.enroll_result, tvb, x[1])
		if x[2].v > 0 then add_str(t, f.enroll_text, tvb, x[2]) end
	elseif n == 2 and is_uint(x[1]) and (is_bstr(x[2]) or (x[2].mt == 7 and x[2].v == 22)) then
		-- a management frame; an empty body may be encoded as null
		local ty = num(x[1])
		name = "mgmt " .. (({ [1] = "hello", [2] = "LSU", [3] = "auth" })[ty] or ("type " .. ty))
		add_num(t, f.mgmt_type, tvb, x[1])
		if is_bstr(x[2]) and x[2].v > 0 then t:add(f.mgmt_body, tvb:range(x[2].off + x[2].hlen, x[2].v)) end
	else
		name = "CBOR array of " .. n
	end
	set_msg(t, pinfo, tvb, off, name)
	show_cbor(tvb, off, pinfo, t)
	return true
end

----------------------------------------------------------------------
-- FRCT (docs/wire/frct.md).

local function frct_valid(tvb, off)
	local n = tvb:len() - off
	if n < 16 then return false end
	local flags = tvb:range(off, 2):uint()
	if tvb:range(off + 2, 2):uint() ~= 0 or flags >= 0x80 then return false end
	local data, fin, ka, sack = flags % 2 == 1, math.floor(flags / 16) % 2 == 1,
		math.floor(flags / 32) % 2 == 1, math.floor(flags / 64) % 2 == 1
	if data and (fin or ka or sack) then return false end
	if sack then return (n - 16) % 8 == 0 and n > 16 and n <= 16 + 4 * 8 end
	return data or n == 16
end

local function dissect_frct(tvb, off, pinfo, tree)
	local t = tree:add(ouro, tvb:range(off), "FRCT")
	local flags = tvb:range(off, 2):uint()
	local ft = t:add(f.frct_flags, tvb:range(off, 2))
	for _, b in ipairs({ f.frct_data, f.frct_ack, f.frct_fc, f.frct_rdvs, f.frct_fin, f.frct_ka, f.frct_sack }) do
		ft:add(b, tvb:range(off, 2))
	end
	t:add(f.frct_window, tvb:range(off + 4, 4))
	t:add(f.frct_seqno, tvb:range(off + 8, 4))
	t:add(f.frct_ackno, tvb:range(off + 12, 4))
	local names = {}
	for i, s in ipairs({ "DATA", "ACK", "FC", "RDVS", "FIN", "KEEPALIVE", "SACK" }) do
		if math.floor(flags / 2 ^ (i - 1)) % 2 == 1 then names[#names + 1] = s end
	end
	local name = "frct " .. table.concat(names, "+")
	if flags % 2 == 1 or math.floor(flags / 16) % 2 == 1 then
		name = name .. " seq " .. tvb:range(off + 8, 4):uint()
	end
	if flags % 2 == 1 then
		if tvb:len() > off + 16 then t:add(f.sdu, tvb:range(off + 16)) end
	elseif math.floor(flags / 64) % 2 == 1 then
		for p = off + 16, tvb:len() - 8, 8 do
			t:add(f.frct_sack_start, tvb:range(p, 4))
			t:add(f.frct_sack_end, tvb:range(p + 4, 4))
		end
	end
	if math.floor(flags / 2) % 2 == 1 then name = name .. " ack " .. tvb:range(off + 12, 4):uint() end
	set_msg(t, pinfo, tvb, off, name)
end

----------------------------------------------------------------------
-- The unicast data-transfer PCI (docs/wire/unicast-dt.md).

local PCI_LEN = 19

local function dissect_dt(tvb, off, pinfo, tree)
	pinfo.cols.protocol = "ouro-dt"
	local n = tvb:len() - off
	local t = tree:add(ouro, tvb:range(off, math.min(n, PCI_LEN)), "Unicast data transfer PCI")
	if n < PCI_LEN or tvb:range(off + 8, 1):uint() >= 5 then
		t:add_proto_expert_info(ef_bad, "shorter than the PCI or a bad QoS cube")
		set_msg(t, pinfo, tvb, off, "dt bad header")
		return
	end
	t:add(f.dt_dst, tvb:range(off, 8))
	t:add(f.dt_cube, tvb:range(off + 8, 1))
	t:add(f.dt_ttl, tvb:range(off + 9, 1))
	t:add(f.dt_ecn, tvb:range(off + 10, 1))
	t:add(f.dt_eid, tvb:range(off + 11, 8))
	local eid = tvb:range(off + 11, 8):uint64()
	local p = off + PCI_LEN
	info[#info + 1] = string.format("dt dst %s eid %s:", tostring(tvb:range(off, 8):uint64()), tostring(eid))
	if eid:higher() == 0 and eid:lower() <= 63 then
		local e = eid:lower()
		if tvb:len() - p < 8 then
			set_msg(t, pinfo, tvb, off, "dt reserved endpoint " .. e .. " (short)")
			return
		end
		t:add(f.dt_src, tvb:range(p, 8))
		if e == 3 then
			set_msg(t, pinfo, tvb, off, "dt keepalive")
		elseif e == 1 and tvb:len() > p + 8 then
			dissect_fa(tvb, p + 8, pinfo, tree)
		elseif e == 2 and tvb:len() > p + 8 then
			local d = tree:add(ouro, tvb:range(p + 8), "Directory message")
			set_msg(d, pinfo, tvb, p + 8, "dir message")
			if cbor_whole(tvb, p + 8) then show_cbor(tvb, p + 8, pinfo, d) end
		else
			set_msg(t, pinfo, tvb, off, "dt reserved endpoint " .. e)
		end
		return
	end
	if p < tvb:len() and frct_valid(tvb, p) then
		dissect_frct(tvb, p, pinfo, tree)
		return
	end
	set_msg(t, pinfo, tvb, off, "dt data")
	if p < tvb:len() then tree:add(f.sdu, tvb:range(p)) end
end

----------------------------------------------------------------------
-- Shims (docs/wire/shims.md).

local shim_names = { [1] = "alloc request", [2] = "alloc response", [3] = "dealloc", [4] = "no such flow", [5] = "name query", [6] = "name reply" }

local function dissect_shim_ctl(tvb, off, pinfo, tree)
	local t = tree:add(ouro, tvb:range(off), "Shim control message")
	local it = cbor_whole(tvb, off)
	if not is_array(it, 7) or not is_uint(it.items[1]) then
		t:add_proto_expert_info(ef_bad, "not a shim control message")
		set_msg(t, pinfo, tvb, off, "shim control (bad)")
		return
	end
	local x = it.items
	local ty = num(x[1])
	set_msg(t, pinfo, tvb, off, "shim " .. (shim_names[ty] or ("type " .. ty)))
	add_num(t, f.shim_type, tvb, x[1])
	for i, fld in ipairs({ f.shim_req, f.shim_src, f.shim_dst }) do
		if is_uint(x[i + 1]) then add_u64(t, fld, tvb, x[i + 1]) end
	end
	if is_uint(x[5]) then add_num(t, f.shim_result, tvb, x[5]) end
	if is_bstr(x[6]) and x[6].v > 0 then t:add(f.shim_hash, tvb:range(x[6].off + x[6].hlen, x[6].v)) end
	show_cbor(tvb, off, pinfo, t)
end

-- dissect_sdu decodes an SDU of a shim flow (or of any N-1 flow of a
-- unicast IPCP): a CBOR message of the flow's opening, enrollment or
-- management, else a dt PDU, else data.
local function dissect_sdu(tvb, off, pinfo, tree)
	if off >= tvb:len() then
		set_msg(tree, pinfo, tvb, off, "empty SDU")
		return
	end
	if dissect_n1(tvb, off, pinfo, tree) then return end
	if tvb:len() - off >= PCI_LEN and tvb:range(off + 8, 1):uint() < 5 then
		dissect_dt(tvb, off, pinfo, tree)
		return
	end
	local t = tree:add(f.sdu, tvb:range(off))
	set_msg(t, pinfo, tvb, off, "SDU")
end

----------------------------------------------------------------------
-- The broadcast layer's header (docs/layers.md, "Broadcast header").

local function dissect_bcast(tvb, off, pinfo, tree)
	local n = tvb:len() - off
	local t = tree:add(ouro, tvb:range(off, math.min(n, 16)), "Broadcast header")
	if n < 16 or tvb:range(off, 1):uint() ~= 1 then
		t:add_proto_expert_info(ef_bad, "shorter than the broadcast header or another version")
		set_msg(t, pinfo, tvb, off, "broadcast bad header")
		return
	end
	t:add(f.bcast_version, tvb:range(off, 1))
	t:add(f.bcast_ttl, tvb:range(off + 1, 1))
	t:add(f.bcast_seq, tvb:range(off + 4, 4))
	t:add(f.bcast_origin, tvb:range(off + 8, 8))
	set_msg(t, pinfo, tvb, off, string.format("broadcast seq %d ttl %d", tvb:range(off + 4, 4):uint(), tvb:range(off + 1, 1):uint()))
	if n > 16 then tree:add(f.sdu, tvb:range(off + 16)) end
end

----------------------------------------------------------------------
-- The capture link type (docs/wire/capture.md).

local f_ifname = Field.new("frame.interface_name")

function ouro.dissector(tvb, pinfo, tree)
	pinfo.cols.protocol = "ouro"
	info = {}
	local t = tree:add(ouro, tvb:range(0, math.min(tvb:len(), 16)), "ouro capture record")
	if tvb:len() < 16 or tvb:range(0, 1):uint() ~= 1 then
		t:add_proto_expert_info(ef_bad, "short record or unknown version")
		return
	end
	t:add(f.version, tvb:range(0, 1))
	t:add(f.dir, tvb:range(1, 1))
	t:add(f.layer, tvb:range(2, 1))
	t:add(f.content, tvb:range(3, 1))
	t:add(f.port, tvb:range(4, 8))
	local dir = dirs[tvb:range(1, 1):uint() % 2]
	local content = tvb:range(3, 1):uint()
	t:append_text(string.format(", %s, %s, %s, port %s", dir, layers[tvb:range(2, 1):uint()] or "?",
		contents[content] or "?", tostring(tvb:range(4, 8):uint64())))
	if content == 1 then
		dissect_dt(tvb, 16, pinfo, tree)
	elseif content == 2 then
		dissect_sdu(tvb, 16, pinfo, tree)
	elseif content == 3 then
		dissect_shim_ctl(tvb, 16, pinfo, tree)
	elseif content == 4 then
		dissect_bcast(tvb, 16, pinfo, tree)
	end
	pinfo.cols.info:set(dir .. " " .. table.concat(info, " "))
	-- Source or destination: the capturing IPCP (the interface's name).
	local ifn = f_ifname()
	if ifn ~= nil then
		if dir == "out" then pinfo.cols.src:set(tostring(ifn.value)) else pinfo.cols.dst:set(tostring(ifn.value)) end
	end
end

DissectorTable.get("wtap_encap"):add(wtap.USER0, ouro)

----------------------------------------------------------------------
-- The shims on the wire: UDP port 3435 and EtherType 0xA000.

local shim_udp = Proto("ouro_udp", "ouro UDP shim")
function shim_udp.dissector(tvb, pinfo, tree)
	if tvb:len() < 4 then return 0 end
	pinfo.cols.protocol = "ouro-udp"
	info = {}
	local t = tree:add(shim_udp, tvb:range(0, 4), "ouro UDP shim header")
	t:add(f.shim_eid, tvb:range(0, 4))
	if tvb:range(0, 4):uint() == 0 then
		dissect_shim_ctl(tvb, 4, pinfo, tree)
	else
		dissect_sdu(tvb, 4, pinfo, tree)
	end
	pinfo.cols.info:set("eid " .. tvb:range(0, 4):uint() .. ": " .. table.concat(info, " "))
	return tvb:len()
end
DissectorTable.get("udp.port"):add(3435, shim_udp)

local shim_eth = Proto("ouro_eth", "ouro Ethernet shim")
function shim_eth.dissector(tvb, pinfo, tree)
	if tvb:len() < 4 then return 0 end
	pinfo.cols.protocol = "ouro-eth"
	info = {}
	local t = tree:add(shim_eth, tvb:range(0, 4), "ouro Ethernet shim header")
	t:add(f.shim_eid, tvb:range(0, 2))
	t:add(f.shim_len, tvb:range(2, 2))
	local n = math.min(tvb:range(2, 2):uint(), tvb:len() - 4)
	local sdu = tvb:range(0, 4 + n):tvb()
	if tvb:range(0, 2):uint() == 0 then
		dissect_shim_ctl(sdu, 4, pinfo, tree)
	else
		dissect_sdu(sdu, 4, pinfo, tree)
	end
	pinfo.cols.info:set("eid " .. tvb:range(0, 2):uint() .. ": " .. table.concat(info, " "))
	return tvb:len()
end
DissectorTable.get("ethertype"):add(0xA000, shim_eth)

----------------------------------------------------------------------
-- The serial shim's framing on a byte stream (docs/wire/serial.md):
-- COBS-encoded frames ending in 0x00, each a 10-byte header, a
-- type-specific part and a CRC-32C. On TCP (the serial shim's tcp_listen
-- and tcp_connect, QEMU chardev sockets) choose it with Decode As, or
-- tshark -d tcp.port==PORT,ouro_serial, or the preference below.

local serial = Proto("ouro_serial", "ouro serial shim")
local sf = {
	valid = ProtoField.bool("ouro_serial.crc_ok", "CRC-32C ok"),
	version = ProtoField.uint8("ouro_serial.version", "Version", base.DEC, nil, 0xf0),
	ftype = ProtoField.uint8("ouro_serial.type", "Type", base.DEC, { [1] = "data", [2] = "hello", [3] = "credit", [4] = "bye" }, 0x0f),
	flags = ProtoField.uint8("ouro_serial.flags", "Flags", base.HEX),
	probe = ProtoField.bool("ouro_serial.flags.probe", "probe", 8, nil, 0x01),
	seq = ProtoField.uint32("ouro_serial.seq", "Seq (credited bytes)"),
	limit = ProtoField.uint32("ouro_serial.limit", "Limit (credit granted)"),
	eid = ProtoField.uint32("ouro_serial.eid", "Destination endpoint id"),
	nonce = ProtoField.uint64("ouro_serial.nonce", "Nonce", base.HEX),
	seen = ProtoField.uint64("ouro_serial.seen", "Seen", base.HEX),
	crc = ProtoField.uint32("ouro_serial.crc", "CRC-32C", base.HEX),
	encoded = ProtoField.bytes("ouro_serial.encoded", "Encoded frame (COBS)"),
}
local sfl = {}
for _, v in pairs(sf) do sfl[#sfl + 1] = v end
serial.fields = sfl
local ef_serial = ProtoExpert.new("ouro_serial.bad", "Bad serial frame", expert.group.MALFORMED, expert.severity.WARN)
serial.experts = { ef_serial }
serial.prefs.tcp_port = Pref.uint("TCP port", 0, "TCP port of a serial shim's stream (0: none; Decode As works too)")

local crc_table = {}
for i = 0, 255 do
	local c = i
	for _ = 1, 8 do
		if bit32.band(c, 1) == 1 then c = bit32.bxor(bit32.rshift(c, 1), 0x82F63B78) else c = bit32.rshift(c, 1) end
	end
	crc_table[i] = c
end

local function crc32c(ba, n)
	local c = 0xFFFFFFFF
	for i = 0, n - 1 do
		c = bit32.bxor(crc_table[bit32.band(bit32.bxor(c, ba:get_index(i)), 0xff)], bit32.rshift(c, 8))
	end
	return bit32.bxor(c, 0xFFFFFFFF)
end

-- cobs_decode decodes b (a ByteArray without the delimiter); nil if bad.
local function cobs_decode(b)
	local out, n, i = {}, b:len(), 0
	while i < n do
		local code = b:get_index(i)
		if code == 0 then return nil end
		i = i + 1
		for _ = 1, code - 1 do
			if i >= n then return nil end
			out[#out + 1] = b:get_index(i)
			i = i + 1
		end
		if code < 0xff and i < n then out[#out + 1] = 0 end
	end
	local ba = ByteArray.new()
	ba:set_size(#out)
	for k, v in ipairs(out) do ba:set_index(k - 1, v) end
	return ba
end

local serial_types = { [1] = "data", [2] = "hello", [3] = "credit", [4] = "bye" }

local function dissect_serial_frame(rng, pinfo, tree)
	local t = tree:add(serial, rng, "ouro serial frame")
	t:add(sf.encoded, rng)
	local body = cobs_decode(rng:range(0, rng:len() - 1):bytes()) -- without the delimiter
	if body == nil or body:len() < 14 then
		t:add_proto_expert_info(ef_serial, "bad COBS or shorter than a header and CRC")
		info[#info + 1] = "serial bad frame"
		return
	end
	local n = body:len() - 4
	local ftvb = body:tvb("Serial frame")
	local want = ftvb:range(n, 4):uint()
	t:add(sf.crc, ftvb:range(n, 4))
	if crc32c(body, n) ~= want then
		t:add_proto_expert_info(ef_serial, "CRC-32C mismatch")
		info[#info + 1] = "serial bad CRC"
		return
	end
	t:add(sf.valid, ftvb:range(n, 4), true)
	t:add(sf.version, ftvb:range(0, 1))
	t:add(sf.ftype, ftvb:range(0, 1))
	local ft = t:add(sf.flags, ftvb:range(1, 1))
	ft:add(sf.probe, ftvb:range(1, 1))
	t:add(sf.seq, ftvb:range(2, 4))
	t:add(sf.limit, ftvb:range(6, 4))
	local ty = ftvb:range(0, 1):uint() % 16
	local name = "serial " .. (serial_types[ty] or ("type " .. ty))
	if ty == 1 and n >= 14 then
		t:add(sf.eid, ftvb:range(10, 4))
		local eid = ftvb:range(10, 4):uint()
		local p = ftvb:range(0, n):tvb()
		info[#info + 1] = name .. " eid " .. eid .. ":"
		if eid == 0 then
			dissect_shim_ctl(p, 14, pinfo, tree)
		else
			dissect_sdu(p, 14, pinfo, tree)
		end
		return
	elseif ty == 2 and n >= 26 then
		t:add(sf.nonce, ftvb:range(10, 8))
		t:add(sf.seen, ftvb:range(18, 8))
	elseif ty == 4 and n >= 18 then
		t:add(sf.nonce, ftvb:range(10, 8))
	end
	info[#info + 1] = name
end

function serial.dissector(tvb, pinfo, tree)
	pinfo.cols.protocol = "ouro-serial"
	info = {}
	local n, off = tvb:len(), 0
	local b = tvb:range(0, n):bytes()
	while off < n do
		local z
		for i = off, n - 1 do
			if b:get_index(i) == 0 then
				z = i
				break
			end
		end
		if z == nil then
			-- a frame continues in the next segment
			pinfo.desegment_offset = off
			pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
			break
		end
		if z > off then dissect_serial_frame(tvb:range(off, z - off + 1), pinfo, tree) end
		off = z + 1
	end
	pinfo.cols.info:set(table.concat(info, " "))
	return n
end

DissectorTable.get("tcp.port"):add_for_decode_as(serial)
local serial_port = 0
function serial.prefs_changed()
	local tp = DissectorTable.get("tcp.port")
	if serial_port ~= 0 then tp:remove(serial_port, serial) end
	serial_port = serial.prefs.tcp_port
	if serial_port ~= 0 then tp:add(serial_port, serial) end
end
