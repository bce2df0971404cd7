-- wrk script: GET /profiles/<random id of the seeded 1..BENCH_ROWS>, Bearer key from the environment.
-- BENCH_PUT_PERCENT (0): that share of requests are PUTs of a ~1 KiB profile instead.
local key = os.getenv("BENCH_API_KEY") or "bench-key"
local rows = tonumber(os.getenv("BENCH_ROWS") or "100000")
local put_percent = tonumber(os.getenv("BENCH_PUT_PERCENT") or "0")
local filler = string.rep("x", 700)
local body = '{"profile":{"email":"bench@example.com","email_verified":true,"phone_number":"+15555550100",' ..
    '"custom":{"plan":"pro","seats":12,"note":"' .. filler .. '"}}}'
local get_headers = {["Authorization"] = "Bearer " .. key}
local put_headers = {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}

local counter = 0
function setup(thread)
    counter = counter + 1
    thread:set("seed", counter)
end

function init(args)
    math.randomseed(os.time() * 1000 + (seed or 0))
end

function request()
    if put_percent > 0 and math.random(1, 100) <= put_percent then
        return wrk.format("PUT", "/profiles/" .. math.random(1, rows), put_headers, body)
    end
    return wrk.format("GET", "/profiles/" .. math.random(1, rows), get_headers)
end

function done(summary, latency, requests)
    io.write(string.format("BENCH requests=%d non2xx=%d errors=%d p50_us=%d p99_us=%d\n",
        summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read +
        summary.errors.write + summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
