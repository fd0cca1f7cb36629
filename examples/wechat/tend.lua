-- A shop that reaches customers on WeChat first (a template message to the
-- customer's openid, kept in attrs.openid) and by SMS when WeChat cannot
-- reach them or does not confirm delivery in time. Both providers call back
-- with receipts; each channel's `receipt` function turns the provider's own
-- callback body into tend's receipts (POST /v1/receipts/<channel>).
-- Secrets come from the environment: ${WECHAT_TOKEN}, ${SMS_KEY}.
return {
  timezone = "Asia/Shanghai",
  channels = {
    wechat = {
      type = "http",
      url = "https://api.weixin.qq.com/cgi-bin/message/template/send?access_token=${WECHAT_TOKEN}",
      address = "attrs.openid",          -- no openid: this channel cannot reach the customer
      -- WeChat's template message body; tend's idempotency key travels as
      -- client_msg_id and comes back in the relay's callback as out_id.
      body = function(m)
        return {
          touser = m.to,
          template_id = "ORDER_NOTICE_TPL",
          client_msg_id = m.id,
          data = { first = { value = m.text } },
        }
      end,
      -- the callback (relayed as JSON): {"out_id": key, "status": "success" | "failed:user block"}
      receipt = function(body)
        local status = body.status == "success" and "delivered" or "failed"
        return { key = body.out_id, status = status, reason = body.status ~= "success" and body.status or nil }
      end,
      price = 0,
    },
    sms = {
      type = "http",
      url = "https://sms.example.com/send",
      headers = { Authorization = "Bearer ${SMS_KEY}" },
      address = "phone",
      price = 0.045, per = "segment",
      -- an Aliyun-style status report: a list of {out_id, success, err_code}
      receipt = function(reports)
        local out = {}
        for _, r in ipairs(reports) do
          out[#out + 1] = { key = r.out_id, status = r.success and "delivered" or "failed",
                            reason = (not r.success) and r.err_code or nil }
        end
        return out
      end,
    },
  },
}
