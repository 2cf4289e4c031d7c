//! Data exfiltration: requests to send, post or encode the conversation, the system prompt
//! or secrets to a URL, an email address or a webhook, and markdown images whose URL
//! carries data.

pub(crate) const PATTERNS: &[(&str, f32)] = &[
    // Markdown image or link whose query is filled from the conversation.
    (
        r"!\[[^\]\n]{0,80}\]\(\s?https?://[^)\s]{1,200}[?&][^)\s=]{1,40}=(?:\{|\[|<|%7b|\$|\(|\.\.\.|data|secret|conversation|history|chat|prompt|summary|key|password|token|email|info)",
        0.85,
    ),
    (
        r"!\[[^\]\n]{0,80}\]\(\s?https?://[^)\s]{0,200}(?:\{|%7b)[^)\s]{0,60}(?:\}|%7d)",
        0.8,
    ),
    (
        r"(?:render|display|show|include|output|embed|insert|add)\s%G4%(?:markdown\s)?(?:image|img|picture|pixel|link)\s%G6%(?:url|https?://|query|parameter)\s%G8%(?:conversation|chat|history|messages?|secret|password|key|token|data|summary|prompt|name|email)",
        0.7,
    ),
    // Verb … data … destination.
    (
        r"(?:send|post|upload|forward|transmit|exfiltrate|leak|email|e-mail|mail|submit|copy|report|push|deliver|beam|pipe|dump|share|relay|sync|write)\S*\s%G6%(?:conversation|chat|history|transcript|messages|context|system prompt|prompt|api[ _-]?keys?|secrets?|credentials?|passwords?|tokens?|environment variables|env(?:ironment)? vars?|\.env|private keys?|ssh keys?|user data|personal data|customer data|contacts|cookies?|session|files?|documents?|inbox|emails|database|records)\S*\s%G8%(?:to|into|at|on|via|using|through)\s%G3%(?:https?://|www\.|[\w.-]+\.(?:com|net|org|io|xyz|ru|cn|site|top|me|info|dev|app)\b|[\w.+-]+@[\w-]+\.\w+|\d{1,3}(?:\.\d{1,3}){3}|(?:my|this|that|the following|an external|a remote|our|the attacker'?s?)\s(?:url|server|endpoint|webhook|address|email|link|site|domain|inbox|api|gist|pastebin|bucket))",
        0.85,
    ),
    (
        r"(?:send|post|upload|forward|transmit|exfiltrate|email|submit|report)\S*\s%G8%(?:to|into|at)\s(?:https?://|www\.)\S+",
        0.3,
    ),
    (
        r"(?:curl|wget|invoke-webrequest|fetch|requests\.(?:get|post)|http\.(?:get|post)|axios\.(?:get|post))[\s(][^\n]{0,160}(?:\$\{?[\w]*(?:key|token|secret|password|pass|cred|aws|openai)|\$\(cat|/etc/passwd|/etc/shadow|\.env\b|id_rsa|\.ssh/|\.aws/credentials|~/\.)",
        0.8,
    ),
    (
        r"(?:cat|type|read|print|dump)\s[^\n]{0,40}(?:/etc/passwd|/etc/shadow|\.env\b|id_rsa|\.aws/credentials|\.ssh/)[^\n]{0,80}(?:\||curl|wget|nc\s|netcat|send|post)",
        0.75,
    ),
    (
        r"(?:base64|hex|rot13|url)[- ]?(?:encode|encoded|encoding)\s%G4%(?:the|your|this|all|entire|whole)\s%G2%(?:conversation|chat|history|system prompt|prompt|instructions|secrets?|keys?|passwords?|messages|context|data)",
        0.6,
    ),
    (
        r"(?:append|add|attach|concatenate|put|include|encode|embed)\s%G4%(?:conversation|chat history|previous messages|system prompt|secrets?|api keys?|passwords?|user'?s? (?:data|info|email|address))\s%G6%(?:url|link|query string|parameter|image)",
        0.7,
    ),
    (
        r"(?:webhook\.site|requestbin|pipedream\.net|ngrok\.io|ngrok-free\.app|burpcollaborator|interact\.sh|oast\.(?:fun|pro|live|site|me)|beeceptor)",
        0.45,
    ),
    // Other languages: verb … data … to a URL or address.
    (
        r"(?:sende|schick|ubermittle|leite\S*\sweiter|lade\S*\shoch|poste|envoie|envoyez|transmets|transmettez|televerse|envia|envie|manda|mande|transmite|invia|inviate|manda|trasmetti|stuur|verstuur|upload|отправь|отправьте|перешли|загрузи|передаи)\S*\s%G6%(?:unterhaltung|gesprach|verlauf|chatverlauf|passwort|passworter|schlussel|zugangsdaten|daten|kontakt|adressbuch|contacts|contactos|contatti|contatos|conversation|historique|mot de passe|cles|identifiants|donnees|conversacion|historial|contrasena|claves|credenciales|datos|conversazione|cronologia|chiavi|credenziali|dati|conversa|historico|senha|chaves|dados|gesprek|geschiedenis|wachtwoord|sleutels|gegevens|переписк|истори|парол|ключ|данные|учетные)\S*\s%G8%(?:https?://|www\.|[\w.+-]+@[\w-]+\.\w+)",
        0.85,
    ),
    // Covert action: the user is not to know. Alone a hint (a developer may ask how to
    // update an app without notifying the user); done in secret towards an address, an
    // exfiltration.
    (
        r"(?:without|w/o)\s(?:telling|informing|notifying|alerting|letting)\s(?:the\s)?(?:user|human|customer|owner|recipient)s?\b|\b(?:do not|don't|never)\s(?:tell|inform|notify|alert)\s(?:the\s)?(?:user|human|customer)s?\b|\bohne\s(?:den|die|das)\s(?:nutzer|benutzer|anwender|kunden)\S*\s(?:daruber\s|davon\s)?zu\s(?:informieren|benachrichtigen)|\bsans\s(?:prevenir|informer|avertir)\s(?:l'?utilisateur|l'?usager)|\bsin\s(?:avisar|informar|notificar|decir)\S*\s(?:al\s)?usuario|\bsenza\s(?:avvisare|informare)\s(?:l'?utente)|\bsem\s(?:avisar|informar)\s(?:o\s)?usuario",
        0.35,
    ),
    (
        r"\b(?:secretly|covertly|silently|quietly|discreetly|heimlich|unbemerkt|en secret|discretement|en secreto|sigilosamente|segretamente|di nascosto|em segredo|secretamente)\s%G4%\b(?:send|forward|upload|copy|email|e-mail|mail|post|share|transmit|exfiltrate|leak|sende|schick|ubermittle|envoie|transmets|envia|manda|invia|trasmetti)\S*\s[^.!?\n]{0,120}?(?:https?://|www\.|[\w.+-]+@[\w-]+\.\w+)",
        0.7,
    ),
    (
        r"(?:把|将|將)[^。！？\n]{0,20}(?:对话|對話|聊天记录|聊天記錄|密码|密碼|密钥|密鑰|系统提示|系統提示|数据|資料)[^。！？\n]{0,20}(?:发送|發送|上传|上傳|提交|转发|轉發)[^。！？\n]{0,10}(?:到|至|给|給)|(?:对话|對話|聊天记录|聊天記錄|密码|密碼|密钥|密鑰)[^。！？\n]{0,20}(?:发送|發送|上传|上傳)(?:到|至)",
        0.8,
    ),
    (
        r"(?:会話|パスワード|APIキー|apiキー|秘密鍵|システムプロンプト|個人情報)[^。\n]{0,60}(?:送信|送って|アップロード|転送)",
        0.75,
    ),
];
