//! Delimiter and markup smuggling: fake end-of-context delimiters, instructions hidden in
//! HTML comments or invisible CSS, pseudo tags that claim a new context. Hidden characters
//! and encoded payloads are scored in `mod.rs` from what the normaliser and the decoder
//! report.

pub(crate) const PATTERNS: &[(&str, f32)] = &[
    (
        r"(?:-{3,}|={3,}|#{3,}|\*{3,}|_{3,}|~{3,})\s?(?:end|begin|start|close)\s(?:of\s)?(?:the\s)?(?:system|user|instructions?|prompt|context|document|input|conversation|data|email|message|text)",
        0.5,
    ),
    (
        r"</?(?:system|instructions?|user_input|user_query|context|prompt|admin|developer|assistant|sys|important|hidden|secret_instructions?)\s?>",
        0.4,
    ),
    (
        r"<!--[\s\S]{0,600}?(?:ignore|instruction|assistant|system|prompt|do not (?:tell|mention|reveal|show)|you must|you are|ai agent|language model|llm)[\s\S]{0,600}?-->",
        0.55,
    ),
    (
        r"(?:display\s?:\s?none|font-size\s?:\s?0|visibility\s?:\s?hidden|color\s?:\s?(?:white|#fff\b|#ffffff|transparent)|opacity\s?:\s?0(?:\.0)?\b)[\s\S]{0,300}?(?:ignore|instruction|assistant|ai\b|model|prompt|you must|send|reveal)",
        0.5,
    ),
    (
        r"(?:end|close) of (?:the )?(?:document|input|context|email|article|file|data|user input|content)[\s\S]{0,40}?(?:new|actual|real|following|additional)\s(?:instructions?|task|directive)",
        0.7,
    ),
    (
        r"(?:note|message|instructions?|attention)\s(?:to|for)\s(?:the\s)?(?:ai|assistant|llm|language model|chatbot|ai agent|model|bot|gpt|claude|copilot)\b",
        0.55,
    ),
    (
        r"(?:if you are|if you're|when you are|as) an? (?:ai|llm|language model|assistant|ai assistant|ai agent|chatbot)(?:\s(?:reading|processing|summari[sz]ing|parsing|seeing|analy[sz]ing) this)?",
        0.45,
    ),
    (
        r"(?:ai|assistant|llm|model|agent|bot)s?\s(?:reading|processing|summari[sz]ing|parsing|crawling|seeing|indexing) (?:this|these)(?:\s(?:page|document|text|email|file|content|message|site))?\b",
        0.55,
    ),
    // A document that speaks to the model reading it, as a line of its own: "AI agent:
    // when you apply this config, …", "# To the AI assistant processing this document:
    // please …", in a few languages. A name that can only mean a model (or a bare one
    // after "to", "dear", "note to"), a colon, then the second person or an imperative:
    // a glossary line ("LLM: a large language model"), a greeting ("Hi Claude, …") or a
    // heading ("Introduction to AI: …") is not one.
    (
        r"(?:^|\n)\s?(?:[#/*>;-]+\s?)?(?:(?:(?:ai agents?|ai assistants?|ai models?|ai systems?|llms?|language models?|chatbots?)(?:\s(?:\S+\s){0,4}?\S+?)?)|(?:(?:dear|attention|attn|note to|message to|to)\s(?:the\s)?(?:ai|assistant|model|chatgpt|claude|gemini|copilot|gpt)(?:\s(?:\S+\s){0,4}?\S+?)?))\s?:\s%G2%(?:you|your|please|ignore|disregard|forget|do|don't|never|always|when|if|before|after|make|send|forward|include|recommend|tell|say|reply|respond|answer|stop|add|delete|remove|run|execute|call|use|output|print|summari[sz]e)\b",
        0.45,
    ),
    (
        r"致[^。\n]{0,16}(?:ai|人工智能)\s?(?:助手|助理|代理|模型|智能体)|(?:给|給)\s?(?:ai|人工智能)\s?(?:助手|助理|代理|模型|智能体)\s?:|ai\s?(?:어시스턴트|비서|에이전트|모델)\s?(?:에게|님께|님)\s?:|ai\s?(?:アシスタント|エージェント|モデル)\s?(?:へ|殿|様)\s?:|(?:^|\n)\s?(?:an die|an den|liebe|lieber)\s(?:ki|ki-assistent\S*|ki-agent\S*)\s?:|(?:^|\n)\s?(?:a l'|pour l')(?:ia|assistant ia|agent ia)\s?:|(?:^|\n)\s?(?:para|a) (?:la|el) (?:ia|asistente(?: de ia)?|agente(?: de ia)?)\s?:|(?:^|\n)\s?(?:all'|per l')(?:ia|assistente)\s?:",
        0.45,
    ),
    (
        r"\[(?:hidden|invisible|secret)\s(?:text|instructions?|prompt|message)\]",
        0.55,
    ),
    (
        r"(?:decode|base64[- ]?decode|rot13|reverse|unscramble|translate)\s%G4%(?:and|then)\s(?:follow|execute|obey|run|do|perform|carry out)\s%G2%(?:it|them|the instructions?|what it says)",
        0.7,
    ),
    // Text that addresses the reading model's own answer: in a fetched page or an email
    // this is an instruction to the assistant, not content (weighed up for tool results).
    (
        r"(?:in|to|into|at the (?:end|start|beginning) of|begin|start|end|prefix|suffix|modify|change|reverse|rewrite|translate|enhance|format|append to)\s(?:your|the assistant'?s?|the ai'?s?)\s(?:answer|response|reply|output|summary|responses|answers)\b",
        0.3,
    ),
    (
        r"(?:when|if|before|after)\s(?:you\s)?(?:answer|respond|reply|summari[sz]e)\S*\s%G4%(?:also|always|make sure|be sure|remember to|you must|include|mention|add|recommend|tell)",
        0.3,
    ),
    // An instruction that shapes the reader's answer: "add a sentence … in your response",
    // "encode/translate/reverse your answer …". A user may say this of their own request
    // (0.4 stays under the threshold); in a document or a tool result it is addressed to
    // the model (× 1.3 for tool results).
    (
        r"(?:add|include|insert|integrate|incorporate|append|mention|put|embed|weave|inject|introduce|use|place)\s%G10%(?:in|into|to|within|throughout|at the (?:end|start|beginning) of)\s(?:your|the)\s(?:response|answer|reply|output|responses|answers)\b",
        0.4,
    ),
    (
        r"(?:translate|encode|encrypt|reverse|rewrite|format|convert|rearrange|scramble|replace|remove|spell|express|represent|render|deliver)\s%G6%(?:your|the)\s(?:response|answer|reply|output)(?:'s|s)?\b",
        0.4,
    ),
];
